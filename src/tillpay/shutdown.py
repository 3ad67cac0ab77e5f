"""SIGTERM at any moment of ``tillpay serve`` or ``tillpay worker``: a clean exit (0), never a kill (-15).

A process manager may stop a server while it is still starting (importing, migrating, creating the demo).
With the default disposition that SIGTERM kills the process outright; so the handler is installed before
anything slow (``install``, called at the top of ``tillpay.cli``), only records the request, and each
stage of start-up looks at it (``exit_if_requested``). Once an event loop runs, ``bind`` hands the request
to its stop event. The handler stays installed until the process ends: asyncio's ``add_signal_handler``
would put the default back when its loop closes, and uvicorn re-raises the signal it caught after its
own graceful shutdown.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncio is imported where a loop is bound: installing the handler stays quick
    import asyncio

#: Exit status of a start-up or run cut short by SIGTERM (a clean stop, as documented in the README).
EXIT_CODE = 0

_state: dict[str, bool] = {"requested": False, "installed": False}
_stops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []


def _handle(signum: int, frame: FrameType | None) -> None:
    _state["requested"] = True
    for loop, stop in list(_stops):
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # that loop has closed since: nothing left to stop there
            _stops.remove((loop, stop))


def install(signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)) -> None:
    """Record ``signals`` from now on instead of dying of them (main thread only)."""
    for sig in signals:
        signal.signal(sig, _handle)
    _state["installed"] = True


def uninstall() -> None:
    """Give SIGTERM its default back (for commands that do not run until stopped)."""
    if _state["installed"]:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _state["installed"] = False


def requested() -> bool:
    """True once a stop signal arrived."""
    return _state["requested"]


def exit_if_requested() -> None:
    """Between start-up stages: stop here, cleanly, if a stop signal came in the meantime."""
    if _state["requested"]:
        sys.exit(EXIT_CODE)


def bind(stop: asyncio.Event) -> None:
    """Set ``stop`` (of the running loop) when a stop signal comes, or now if one came already."""
    import asyncio

    _stops.append((asyncio.get_running_loop(), stop))
    if _state["requested"]:
        stop.set()


def unbind(stop: asyncio.Event) -> None:
    """Forget ``stop`` (its loop is about to close)."""
    _stops[:] = [(loop, s) for loop, s in _stops if s is not stop]
