"""An error logged with ``exc_info=True`` carries its traceback, on one line."""

from __future__ import annotations

import pytest
import structlog

from tillpay.logs import configure_logging


def test_exc_info_renders_the_traceback_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    log = structlog.get_logger("test")
    try:
        raise RuntimeError("database gone")
    except RuntimeError:
        log.error("mapi_internal_error", service="alipay.acquire.query", exc_info=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "mapi_internal_error" in ln]
    assert len(lines) == 1, lines
    assert "Traceback (most recent call last)" in lines[0]
    assert "RuntimeError: database gone" in lines[0]
    assert "exc_info=True" not in lines[0]
