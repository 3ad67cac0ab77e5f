"""A PostgreSQL primary and a synchronous standby under pg_auto_failover, for one machine or several.

pg_auto_failover (Debian's ``postgresql-15-auto-failover``) runs a *monitor* (a small PostgreSQL with
the ``pgautofailover`` extension) and one ``pg_autoctl`` keeper per data node. The monitor decides
which node is primary; the keepers carry it out. With two data nodes the standby is synchronous: a
commit on the primary returns only when the standby has the WAL, so a payment Tillpay answered as
successful survives the loss of the primary (docs/reliability.md says why this manager).

Everything here shells out to ``pg_autoctl`` as the ``postgres`` user (PostgreSQL refuses to run as
root), with its configuration and state under one directory, so several set-ups can share a machine.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _pg_bin() -> Path:
    """The newest PostgreSQL's binaries in Debian's layout (pg_auto_failover is built for it)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
#: The database the nodes create for Tillpay.
DBNAME = "tillpay"

#: Monitor timings for a test machine: a dead primary is noticed in about 3 s instead of about 30 s.
#: (pgautofailover.* settings on the monitor; https://pg-auto-failover.readthedocs.io/en/main/ref/configuration.html)
FAST_MONITOR = {
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
    "pgautofailover.node_considered_unhealthy_timeout": "3000",
    "pgautofailover.primary_demote_timeout": "5000",
    "pgautofailover.startup_grace_period": "3000",
}


class HaError(RuntimeError):
    """A pg_auto_failover step failed; the message names the step and the log to read."""


@dataclass(frozen=True)
class Layout:
    """Where the monitor and the nodes of one set-up live: directories under ``base`` and ports."""

    base: Path
    hostname: str = "127.0.0.1"
    monitor_port: int = 55430
    node_ports: tuple[int, ...] = (55431, 55432)
    #: ``all`` (monitor and nodes here, one machine), ``monitor`` or ``node`` (one part per host).
    role: str = "all"
    #: Where the monitor runs when this host has only a node (``role="node"``).
    monitor_host: str = ""
    #: How nodes and monitor authenticate each other: ``trust`` on loopback; see docs/reliability.md.
    auth: str = "trust"

    @property
    def local(self) -> bool:
        """Whether everything listens on loopback (one machine)."""
        return self.hostname in ("127.0.0.1", "localhost", "::1")

    @property
    def monitor_dir(self) -> Path:
        return self.base / "monitor"

    def node_dir(self, i: int) -> Path:
        """Data directory of node ``i`` (1-based)."""
        return self.base / f"node{i}"

    @property
    def monitor_url(self) -> str:
        """The URL the keepers reach the monitor on."""
        host = self.monitor_host or self.hostname
        ssl = "disable" if self.local else "require"
        return f"postgresql://autoctl_node@{host}:{self.monitor_port}/pg_auto_failover?sslmode={ssl}"

    def database_url(self, user: str = "postgres") -> str:
        """The URL Tillpay uses: every node, and only a read-write session will do."""
        hosts = ",".join(f"{self.hostname}:{p}" for p in self.node_ports)
        return f"postgresql://{user}@{hosts}/{DBNAME}?target_session_attrs=read-write"

    def node_url(self, i: int, user: str = "postgres") -> str:
        """The URL of node ``i`` alone (for tests and inspection)."""
        return f"postgresql://{user}@{self.hostname}:{self.node_ports[i - 1]}/{DBNAME}"

    def save(self) -> None:
        """Remember the ports, so ``status``/``down`` need only the directory."""
        (self.base / "tillpay-ha.json").write_text(
            json.dumps(
                {
                    "hostname": self.hostname,
                    "monitor_port": self.monitor_port,
                    "node_ports": list(self.node_ports),
                    "role": self.role,
                    "monitor_host": self.monitor_host,
                    "auth": self.auth,
                }
            )
        )

    @classmethod
    def load(cls, base: Path) -> Layout:
        """The layout saved in ``base`` by :func:`up`."""
        try:
            data = json.loads((base / "tillpay-ha.json").read_text())
        except FileNotFoundError:
            raise HaError(f"no set-up in {base} (run `tillpay ha up --dir {base}` first)") from None
        return cls(
            base,
            data["hostname"],
            data["monitor_port"],
            tuple(data["node_ports"]),
            data.get("role", "all"),
            data.get("monitor_host", ""),
            data.get("auth", "trust"),
        )


def _as_postgres(argv: Sequence[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


def _env(layout: Layout) -> dict[str, str]:
    env = dict(os.environ)  # the child's environment, not configuration
    env["PATH"] = f"{PG_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    # pg_autoctl keeps its configuration and state under XDG directories: one set per set-up.
    env["XDG_CONFIG_HOME"] = str(layout.base / "xdg" / "config")
    env["XDG_DATA_HOME"] = str(layout.base / "xdg" / "data")
    env["XDG_RUNTIME_DIR"] = str(layout.base / "xdg" / "run")
    env.pop("PGDATA", None)
    return env


def autoctl(layout: Layout, *args: str, timeout: float = 120) -> str:  # float-ok: seconds
    """Run one ``pg_autoctl`` command to completion; its standard output."""
    p = subprocess.run(  # noqa: S603 - fixed program, arguments from this module
        _as_postgres(["pg_autoctl", *args]),
        env=_env(layout),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=layout.base,
        check=False,
    )
    if p.returncode != 0:
        raise HaError(f"pg_autoctl {' '.join(args[:2])} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


def _run_in_background(layout: Layout, name: str, args: Sequence[str]) -> None:
    log = open(layout.base / f"{name}.log", "ab")
    proc = subprocess.Popen(  # noqa: S603 - fixed program, arguments from this module
        _as_postgres(["pg_autoctl", *args]),
        env=_env(layout),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=layout.base,
        start_new_session=True,  # survives the command that started it, like a service
    )
    log.close()
    # The keeper, its service processes and its PostgreSQL share this process group: a crash or a
    # stop that must not leave any of them behind uses it.
    (layout.base / f"{name}.pgid").write_text(str(proc.pid))


def _group(layout: Layout, name: str) -> list[int]:
    """The live processes of ``name``'s process group that are pg_autoctl's or PostgreSQL's."""
    try:
        pgid = int((layout.base / f"{name}.pgid").read_text())
    except (FileNotFoundError, ValueError):
        return []
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            cmd = (proc / "cmdline").read_bytes()
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
        # A process group id can be reused once the group is gone: only ever ours.
        if b"pg_autoctl" in cmd or b"postgres" in cmd or b"runuser" in cmd:
            pids.append(int(proc.name))
    return pids


def _kill_group(layout: Layout, name: str) -> None:
    for pid in _group(layout, name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _postgres_uid() -> int:
    return pwd.getpwnam("postgres").pw_uid


def _prepare(layout: Layout) -> None:
    for d in (
        layout.base,
        layout.base / "xdg" / "config",
        layout.base / "xdg" / "data",
        layout.base / "xdg" / "run",
    ):
        d.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(layout.base, "postgres", "postgres")
        for d in layout.base.rglob("*"):
            shutil.chown(d, "postgres", "postgres")
        # The postgres user must reach the directory; say so rather than loosen a parent's mode.
        for parent in layout.base.resolve().parents:
            if parent.stat().st_uid != _postgres_uid() and not parent.stat().st_mode & 0o001:
                raise HaError(
                    f"the postgres user cannot reach {layout.base}: {parent} is not searchable (chmod o+x)"
                )
    (layout.base / "xdg" / "run").chmod(0o700)


def state(layout: Layout) -> list[dict[str, Any]]:
    """The monitor's view of the nodes: name, port, reported and assigned state, LSN, health."""
    where = (
        ["--monitor", layout.monitor_url] if layout.role == "node" else ["--pgdata", str(layout.monitor_dir)]
    )
    out = autoctl(layout, "show", "state", *where, "--json", timeout=30)
    rows: list[dict[str, Any]] = json.loads(out) if out.strip() else []
    return rows


def _wait(
    layout: Layout,
    want: list[str],
    timeout: float,  # float-ok: seconds
    nudge_port: int | None = None,
) -> list[dict[str, Any]]:
    """Wait until the nodes' reported and assigned states are exactly ``want`` (each node one)."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if nudge_port is not None:
            _checkpoint(layout.hostname, nudge_port)
        try:
            last = state(layout)
        except HaError:
            last = []
        got = [(str(r.get("current_group_state")), str(r.get("assigned_group_state"))) for r in last]
        if sorted(a for a, _ in got) == sorted(want) and all(a == b for a, b in got):
            return last
        time.sleep(0.5)
    raise HaError(f"nodes did not reach {sorted(want)} in {timeout:.0f} s: {last}; logs in {layout.base}")


def _checkpoint(host: str, port: int) -> None:
    """Ask ``host:port`` for an immediate checkpoint (best effort).

    A new standby's pg_basebackup waits for a *spread* checkpoint on the primary (minutes on an idle
    server); an immediate CHECKPOINT request makes the running one finish now.
    """
    subprocess.run(  # noqa: S603 - fixed program
        [
            str(PG_BIN / "psql"),
            "-qAtw",
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            DBNAME,
            "-c",
            "CHECKPOINT",
        ],
        capture_output=True,
        timeout=30,
        check=False,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )


def up(layout: Layout, *, fast: bool = False, timeout: float = 180) -> str:  # float-ok: seconds
    """Create (first time) and start this host's part; the database URL for Tillpay (role ``all``), or
    the monitor's URL (``monitor``), or this node's address (``node``)."""
    _prepare(layout)
    layout.save()
    common = ["--pgctl", str(PG_BIN / "pg_ctl"), "--hostname", layout.hostname, "--auth", layout.auth]
    # On loopback there is no network to protect; between hosts, TLS with self-signed certificates at
    # least (pg_auto_failover's docs explain using your own CA).
    common += ["--no-ssl"] if layout.local else ["--ssl-self-signed"]
    if layout.role in ("all", "monitor"):
        if not (layout.monitor_dir / "PG_VERSION").exists():
            # Created and then run in one process (as the nodes are): `create` alone leaves a
            # service process behind.
            args = [
                "create",
                "monitor",
                "--pgdata",
                str(layout.monitor_dir),
                "--pgport",
                str(layout.monitor_port),
            ]
            _run_in_background(layout, "monitor", [*args, *common, "--run"])
            _wait_monitor(layout, timeout)
            # Then the settings of this set-up: loopback only for one machine, fast health checks.
            extra = dict(FAST_MONITOR) if fast else {}
            if layout.local:
                extra["listen_addresses"] = "'127.0.0.1'"
            if extra:
                _append_conf(layout.monitor_dir, extra)
                _stop(layout, layout.monitor_dir, "monitor")
        if not is_running(layout.monitor_dir):
            _run_in_background(layout, "monitor", ["run", "--pgdata", str(layout.monitor_dir)])
        _wait_ready(layout.hostname, layout.monitor_port, timeout)
        if layout.role == "monitor":
            return layout.monitor_url
    for i, port in enumerate(layout.node_ports, start=1):
        d = layout.node_dir(i)
        # One machine: node1, node2; one node per host: the host's name.
        name = f"node{i}" if layout.role == "all" else f"{layout.hostname}-{port}"
        if not (d / "PG_VERSION").exists() and not (layout.base / f"node{i}.created").exists():
            args = ["create", "postgres", "--pgdata", str(d), "--pgport", str(port), "--name", name]
            args += ["--dbname", DBNAME, "--monitor", layout.monitor_url, *common]
            # One machine: loopback only. Several: Tillpay's hosts in the LAN may reach the database.
            args += ["--listen", "127.0.0.1"] if layout.local else ["--pg-hba-lan"]
            (layout.base / f"node{i}.created").touch()
            _run_in_background(layout, f"node{i}", [*args, "--run"])
        elif not is_running(d):
            _run_in_background(layout, f"node{i}", ["run", "--pgdata", str(d)])
        if layout.role == "node":
            _wait_node(layout, name, timeout)
            continue
        # One node at a time: the second clones the first once it is primary.
        _wait(
            layout,
            ["single"] if i == 1 else ["primary", *(["secondary"] * (i - 1))],
            timeout,
            nudge_port=None if i == 1 else layout.node_ports[0],
        )
    if layout.role == "node":
        return f"{layout.hostname}:{layout.node_ports[0]}"
    return layout.database_url()


def _wait_monitor(layout: Layout, timeout: float) -> None:  # float-ok: seconds
    """Wait until the monitor answers ``show state`` (created, extension installed, running)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state(layout)
            return
        except (HaError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                raise HaError(f"the monitor did not start in {timeout:.0f} s; log in {layout.base}") from None
            time.sleep(0.5)


def _wait_node(layout: Layout, name: str, timeout: float) -> None:  # float-ok: seconds
    """Wait until the node ``name`` has settled as primary, standby or the only node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for r in state(layout):
                now, assigned = r.get("current_group_state"), r.get("assigned_group_state")
                if (
                    r.get("nodename") == name
                    and now == assigned
                    and now in ("single", "primary", "secondary")
                ):
                    return
        except HaError:
            pass
        time.sleep(1)
    raise HaError(f"node {name} did not join in {timeout:.0f} s; log in {layout.base}")


def _append_conf(pgdata: Path, settings: dict[str, str]) -> None:
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write("\n# tillpay ha up\n")
        for k, v in settings.items():
            f.write(f"{k} = {v}\n")


def _wait_ready(host: str, port: int, timeout: float) -> None:  # float-ok: seconds
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            subprocess.run(  # noqa: S603 - fixed program
                [str(PG_BIN / "pg_isready"), "-q", "-h", host, "-p", str(port)], check=False
            ).returncode
            == 0
        ):
            return
        time.sleep(0.3)
    raise HaError(f"PostgreSQL on {host}:{port} is not ready after {timeout:.0f} s")


def keeper_pid(pgdata: Path) -> int | None:
    """The pid of the ``pg_autoctl`` process running ``pgdata``, if any."""
    for pidfile in (pgdata.parent / "xdg" / "run").rglob("pg_autoctl.pid"):
        # The run directory mirrors the data directory's path.
        if str(pgdata).lstrip("/") in str(pidfile.parent):
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, 0)
                return pid
            except (ValueError, IndexError, ProcessLookupError, PermissionError):
                return None
    return None


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the PostgreSQL server running ``pgdata``, if any."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError, PermissionError):
        return None


def is_running(pgdata: Path) -> bool:
    """Whether a keeper runs ``pgdata``."""
    return keeper_pid(pgdata) is not None


def primary(layout: Layout) -> int:
    """The number (1-based) of the node the monitor has as primary."""
    for r in state(layout):
        if r.get("current_group_state") in ("primary", "single", "wait_primary") and r.get(
            "assigned_group_state"
        ) == r.get("current_group_state"):
            return layout.node_ports.index(int(r["nodeport"])) + 1
    raise HaError("no node is primary")


def switchover(layout: Layout, timeout: float = 120) -> int:  # float-ok: seconds
    """A planned switchover: the standby becomes primary; the new primary's number."""
    before = primary(layout)
    autoctl(layout, "perform", "switchover", "--pgdata", str(layout.monitor_dir), timeout=timeout)
    _wait(layout, ["primary", *(["secondary"] * (len(layout.node_ports) - 1))], timeout)
    after = primary(layout)
    if after == before:
        raise HaError(f"switchover left node{before} primary")
    return after


def crash_node(layout: Layout, i: int) -> None:
    """``kill -9`` of node ``i``'s postmaster, keeper and every keeper service: the machine is gone.

    (A service left running would start PostgreSQL again: a node that was not lost after all.)
    """
    postmaster = postmaster_pid(layout.node_dir(i))
    _kill_group(layout, f"node{i}")
    if postmaster is not None:
        try:
            os.kill(postmaster, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_node(layout: Layout, i: int) -> None:
    """Start node ``i``'s keeper again (after a crash): it rejoins as a standby."""
    if not is_running(layout.node_dir(i)):
        _run_in_background(layout, f"node{i}", ["run", "--pgdata", str(layout.node_dir(i))])


def wait_healthy(layout: Layout, timeout: float = 120) -> list[dict[str, Any]]:  # float-ok: seconds
    """Wait for one primary and all other nodes secondary again."""
    want = ["primary", *(["secondary"] * (len(layout.node_ports) - 1))]
    try:
        port: int | None = layout.node_ports[primary(layout) - 1]
    except HaError:
        port = None
    return _wait(layout, want, timeout, nudge_port=port)


def down(layout: Layout, *, purge: bool = False) -> None:
    """Stop the nodes and the monitor (``purge``: and delete their directories)."""
    for i in range(1, len(layout.node_ports) + 1):
        _stop(layout, layout.node_dir(i), f"node{i}")
    if layout.role != "node":
        _stop(layout, layout.monitor_dir, "monitor")
    if purge:
        shutil.rmtree(layout.base, ignore_errors=True)


def _stop(layout: Layout, pgdata: Path, name: str) -> None:
    if not pgdata.exists():
        _kill_group(layout, name)
        return
    if is_running(pgdata):
        try:
            autoctl(layout, "stop", "--pgdata", str(pgdata), timeout=60)
        except (HaError, subprocess.TimeoutExpired):
            pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (is_running(pgdata) or postmaster_pid(pgdata)):
        time.sleep(0.2)
    for pid in (keeper_pid(pgdata), postmaster_pid(pgdata)):
        if pid is not None:  # it would not stop: nothing is left running behind the operator's back
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _kill_group(layout, name)  # nor a service process of a keeper that was killed
