"""The customer's wallet web app, served under ``/wallet`` (see ``docs/wallet.md``)."""

from tillpay.web.wallet.pages import wallet_routes

__all__ = ["wallet_routes"]
