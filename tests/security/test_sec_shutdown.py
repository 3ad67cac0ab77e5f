"""SIGTERM at any moment of ``tillpay worker`` and ``tillpay serve`` start-up: exit 0, never killed (-15).

Before the fix the handler was installed only once the event loop ran, seconds after the process started
(imports, migrations), so a process manager's SIGTERM in that time killed the process with -15.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port

SRC = Path(__file__).resolve().parents[2] / "src"
TILLPAY = [sys.executable, "-m", "tillpay.cli"]


def _caught(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(mask & (1 << (sig - 1)))


def _spawn(args: list[str], tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "TILLPAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'tillpay.db'}",
        "TILLPAY_WORKER_POLL_SECONDS": "0.1",
    }
    return subprocess.Popen(
        [*TILLPAY, *args], env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _term_after(
    args: list[str], tmp: Path, delay: float | None, *, from_python: bool = False
) -> tuple[int, str]:
    """Start ``tillpay ARGS`` and send SIGTERM ``delay`` seconds (at once when None) after tillpay's own
    handler is in place, or with ``from_python`` after the interpreter runs; return the exit status and
    stderr.

    The long-running commands install their handler in the first lines of ``tillpay.cli``; before that
    the interpreter itself is starting (site, .pth files), which on a loaded machine can take longer than
    any fixed delay, and no Python program can catch a signal there. So the delays count from the handler,
    and every later stage (the imports, migrations, the event loop) is covered."""
    proc = _spawn(args, tmp)
    deadline = time.monotonic() + 30
    want = signal.SIGINT if from_python else signal.SIGTERM  # SIGINT: Python's own handler, once it runs
    while not _caught(proc.pid, want) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay or 0)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, proc.stderr.read().decode() if proc.stderr else ""


@pytest.mark.slow
@pytest.mark.parametrize("delay", [None, 0.2, 0.6, 1.5, 3.0])
def test_worker_exits_cleanly_on_sigterm_at_any_moment_of_start_up(
    tmp_path: Path, delay: float | None
) -> None:
    code, err = _term_after(["worker"], tmp_path, delay)
    assert code == 0, err


@pytest.mark.slow
@pytest.mark.parametrize("delay", [None, 0.2, 0.6, 1.5, 3.0, 6.0])
def test_serve_exits_cleanly_on_sigterm_at_any_moment_of_start_up(
    tmp_path: Path, delay: float | None
) -> None:
    code, err = _term_after(["serve", "--port", str(free_port())], tmp_path, delay)
    assert code == 0, err


@pytest.mark.slow
def test_a_one_off_command_keeps_the_default_sigterm(tmp_path: Path) -> None:
    # Only the long-running commands catch SIGTERM; ``tillpay audit`` is simply stopped.
    code, _ = _term_after(["audit"], tmp_path, 0.2, from_python=True)
    assert code == -signal.SIGTERM
