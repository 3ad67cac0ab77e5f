"""ASGI entry point for ``uvicorn tillpay.web.asgi:create --factory`` (settings from the environment)."""

from __future__ import annotations

from starlette.applications import Starlette

from tillpay.config import Settings
from tillpay.logs import configure_logging
from tillpay.services.platform import Platform
from tillpay.web.app import create_app


def create() -> Starlette:
    """Build the app from ``TILLPAY_*`` settings (one platform per server process)."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(Platform(settings))
