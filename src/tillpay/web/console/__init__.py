"""The merchant console, served under ``/console`` (see ``docs/console.md``)."""

from tillpay.web.console.pages import console_routes

__all__ = ["console_routes"]
