"""Log setup shared by the CLI and the ASGI entry point: structlog key=value lines on stderr.

A request's id (``X-Request-Id``, web/metrics.py) lives in a context variable while the request runs;
every line logged meanwhile carries it as ``request_id``, through structlog and through the standard
``logging`` module (uvicorn's own error lines included).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

#: The id of the HTTP request being answered in this context, or None outside a request.
request_id: ContextVar[str | None] = ContextVar("tillpay_request_id", default=None)


def _add_request_id(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    rid = request_id.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


class RequestIdFilter(logging.Filter):
    """Appends `` request_id=...`` to a standard-library record logged while a request runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        # A record passes every handler's filter: tag it once. Request ids never hold ``%`` (metrics.py).
        if rid is not None and not getattr(record, "request_id", None):
            record.request_id = rid
            record.msg = f"{record.msg} request_id={rid}"
        return True


_FILTER = RequestIdFilter()


def tag_stdlib_handlers(*names: str) -> None:
    """Give the handlers of the root logger and of ``names`` (e.g. uvicorn's) the request-id filter."""
    for name in ("", *names):
        for handler in logging.getLogger(name or None).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


class _StderrLogger:
    """Writes each rendered line to the *current* ``sys.stderr``.

    structlog's ``PrintLoggerFactory(sys.stderr)`` keeps the stream it was given; when that was a
    temporary one (a command run in-process, a captured test), every later line would go to a closed
    file and raise. Looking ``sys.stderr`` up per line costs nothing next to rendering it.
    """

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def configure_logging(level: str) -> None:
    """Structured logs on stderr at ``level``."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=lvl, format="%(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter is not news
    structlog.configure(
        processors=[
            _add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # exc_info=True becomes the traceback, on the same line (KeyValueRenderer escapes newlines).
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=_stderr_logger,
    )
    tag_stdlib_handlers("uvicorn", "uvicorn.error")
