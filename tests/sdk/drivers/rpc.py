"""The drivers' loop: one JSON request per stdin line, one JSON answer per stdout line.

Each SDK runs in its own virtualenv (two of them install a package named ``alipay``; one pins an old
``cryptography``), so the tests drive it through this small protocol from a subprocess.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any


def serve(ops: dict[str, Callable[..., Any]]) -> None:
    """Answer ``{"op": name, "args": {...}}`` lines until stdin closes."""
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = ops[request["op"]](**request.get("args", {}))
            answer = {"ok": True, "result": result}
        except Exception as e:  # the test wants to see the SDK's own exception
            answer = {
                "ok": False,
                "error": type(e).__name__,
                "message": str(e)[:2000],
                "trace": traceback.format_exc()[-2000:],
            }
        sys.stdout.write(json.dumps(answer, default=str) + "\n")
        sys.stdout.flush()
