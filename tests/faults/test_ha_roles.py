"""``tillpay ha up --role monitor|node``: the several-hosts set-up of docs/reliability.md, each part in
a directory of its own (as on its own host), here all on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from faultkit import TILLPAY, free_port

pytestmark = [pytest.mark.slow, pytest.mark.faults_long]


def _tillpay(*args: str) -> dict[str, object]:
    p = subprocess.run([*TILLPAY, "--json", *args], capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    out: dict[str, object] = json.loads(p.stdout)
    return out


def test_a_monitor_and_two_nodes_started_one_by_one_form_a_primary_and_a_standby() -> None:
    root = Path(tempfile.mkdtemp(prefix="tillpay-ha-roles-"))
    root.chmod(0o711)  # each part's directory below is the postgres user's
    monitor_port, p1, p2 = free_port(), free_port(), free_port()
    dirs = {name: root / name for name in ("m1", "db1", "db2")}
    try:
        up = _tillpay(
            "ha", "up", "--role", "monitor", "--dir", str(dirs["m1"]), "--monitor-port", str(monitor_port)
        )
        assert str(up["monitor"]).startswith(f"postgresql://autoctl_node@127.0.0.1:{monitor_port}/")
        for name, port in (("db1", p1), ("db2", p2)):
            node = _tillpay(
                "ha",
                "up",
                "--role",
                "node",
                "--dir",
                str(dirs[name]),
                "--node-port",
                str(port),
                "--monitor-host",
                "127.0.0.1",
                "--monitor-port",
                str(monitor_port),
            )
            assert node["node"] == f"127.0.0.1:{port}"
        status = _tillpay("ha", "status", "--dir", str(dirs["db2"]))
        nodes = {n["nodename"]: n["current_group_state"] for n in status["nodes"]}  # type: ignore[attr-defined]
        assert nodes == {f"127.0.0.1-{p1}": "primary", f"127.0.0.1-{p2}": "secondary"}
    finally:
        for name in ("db2", "db1", "m1"):
            if (dirs[name] / "tillpay-ha.json").exists():
                subprocess.run(
                    [*TILLPAY, "ha", "down", "--dir", str(dirs[name]), "--purge"],
                    capture_output=True,
                    timeout=300,
                )
        shutil.rmtree(root, ignore_errors=True)
