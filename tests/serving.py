"""Shared by the tests that start ``tillpay serve`` as a process: wait for it to answer ``/health``, stop it.

Every such test starts the server in a session of its own (``start_new_session=True``) with its output on
a pipe, so that a failed start can show what the server said and stopping it also stops its workers.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time

import httpx

#: How often a starting server is asked for ``/health``; each question costs the server next to nothing.
POLL_SECONDS = 0.05  # float-ok: seconds


def wait_until_healthy(
    proc: subprocess.Popen[str],
    url: str,
    *,
    timeout: float = 60.0,  # float-ok: seconds
    verify: ssl.SSLContext | bool = True,
) -> None:
    """Return once ``url + "/health"`` answers 200. If the process ends first, or ``timeout`` seconds pass,
    stop it (its whole process group) and raise RuntimeError with everything it wrote."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1, verify=verify) as client:
        while True:
            try:
                if client.get(url + "/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
    out = stop_process_group(proc, signal.SIGKILL)
    raise RuntimeError(f"tillpay serve at {url} did not start (exit status {proc.returncode}): {out}")


def stop_process_group(
    proc: subprocess.Popen[str],
    sig: int = signal.SIGTERM,
    timeout: float = 20.0,  # float-ok: seconds
) -> str:
    """Send ``sig`` to the process's group (SIGKILL if it has not ended after ``timeout`` seconds); return
    what it wrote to its output pipe ("" when it has none)."""
    try:
        os.killpg(proc.pid, sig)  # its workers too, even when the server itself has already ended
    except ProcessLookupError:
        pass
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out or ""
