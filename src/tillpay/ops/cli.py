"""``tillpay ha`` (a PostgreSQL primary and synchronous standby under pg_auto_failover) and
``tillpay backup`` (SQLite's online backup)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tillpay.ops import backup as backup_ops
from tillpay.ops import ha as ha_ops

if TYPE_CHECKING:  # tillpay.cli imports this module, so the context is imported for types only
    from tillpay.cli.common import Ctx

_DIR = click.option(
    "--dir",
    "base",
    default="tillpay-ha",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the monitor's and the nodes' data, configuration and logs.",
)


@click.group()
def ha() -> None:
    """PostgreSQL failover: a monitor and two nodes under pg_auto_failover (docs/reliability.md)."""


@ha.command("up")
@_DIR
@click.option(
    "--hostname", default="127.0.0.1", show_default=True, help="Address the nodes use for each other."
)
@click.option("--monitor-port", default=55430, show_default=True, type=int)
@click.option(
    "--node-port", "node_ports", multiple=True, type=int, help="One per node (default: 55431 and 55432)."
)
@click.option(
    "--fast-failover", is_flag=True, help="Notice a dead primary in ~3 s instead of ~30 s (tests, demos)."
)
@click.option(
    "--role",
    type=click.Choice(["all", "monitor", "node"]),
    default="all",
    show_default=True,
    help="all: monitor and two nodes on this machine; monitor or node: this host's part of several.",
)
@click.option("--monitor-host", default="", help="With --role node: the host the monitor runs on.")
@click.option(
    "--auth",
    default="trust",
    show_default=True,
    help="How nodes and monitor authenticate (pg_hba method); use scram-sha-256 between hosts.",
)
@click.pass_obj
def ha_up(
    c: Ctx,
    base: Path,
    hostname: str,
    monitor_port: int,
    node_ports: tuple[int, ...],
    fast_failover: bool,
    role: str,
    monitor_host: str,
    auth: str,
) -> None:
    """Create (first time) and start the monitor and the nodes; print the database URL for Tillpay."""
    if role == "node" and not monitor_host:
        raise click.UsageError("--role node needs --monitor-host")
    default_ports = (55431, 55432) if role == "all" else (5432,)
    layout = ha_ops.Layout(
        base.resolve(), hostname, monitor_port, node_ports or default_ports, role, monitor_host, auth
    )
    if (layout.base / "tillpay-ha.json").exists():
        layout = ha_ops.Layout.load(layout.base)
    try:
        url = ha_ops.up(layout, fast=fast_failover)
    except ha_ops.HaError as e:
        c.fail("HA_FAILED", str(e))
    if layout.role == "all":
        c.out({"database_url": url, "dir": str(layout.base)}, f"up; TILLPAY_DATABASE_URL={url}")
    else:
        c.out({layout.role: url, "dir": str(layout.base)}, f"{layout.role} up: {url}")


@ha.command("status")
@_DIR
@click.pass_obj
def ha_status(c: Ctx, base: Path) -> None:
    """The monitor's view: each node's state, health and WAL position."""
    try:
        layout = ha_ops.Layout.load(base.resolve())
        rows = ha_ops.state(layout)
    except ha_ops.HaError as e:
        c.fail("HA_FAILED", str(e))
    text = "\n".join(
        f"{r['nodename']:8} {r['nodehost']}:{r['nodeport']:<6} {r['current_group_state']:>14}"
        f" (assigned {r['assigned_group_state']}) lsn {r['reported_lsn']}"
        f" {'healthy' if r['health'] == 1 else 'UNHEALTHY'}"
        for r in rows
    )
    c.out({"nodes": rows, "database_url": layout.database_url()}, text or "no nodes")


@ha.command("switchover")
@_DIR
@click.pass_obj
def ha_switchover(c: Ctx, base: Path) -> None:
    """A planned switchover: the standby becomes primary, the primary a standby."""
    t0 = time.monotonic()
    try:
        layout = ha_ops.Layout.load(base.resolve())
        new = ha_ops.switchover(layout)
    except ha_ops.HaError as e:
        c.fail("HA_FAILED", str(e))
    took = time.monotonic() - t0
    c.out({"primary": f"node{new}", "seconds": round(took, 1)}, f"node{new} is primary ({took:.1f} s)")


@ha.command("down")
@_DIR
@click.option("--purge", is_flag=True, help="Also delete the directory (all data).")
@click.pass_obj
def ha_down(c: Ctx, base: Path, purge: bool) -> None:
    """Stop the nodes and the monitor."""
    try:
        layout = ha_ops.Layout.load(base.resolve())
    except ha_ops.HaError as e:
        c.fail("HA_FAILED", str(e))
    ha_ops.down(layout, purge=purge)
    c.out({"status": "down", "purged": purge}, "down" + (" and purged" if purge else ""))


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def backup(c: Ctx, dest: Path) -> None:
    """Copy the live SQLite database to DEST (consistent while Tillpay runs; restore: docs/backup.md)."""

    def progress(done: int, total: int) -> None:
        if not c.as_json:
            click.echo(f"\rcopied {done}/{total} pages ({100 * done // max(total, 1)}%)", nl=False, err=True)

    try:
        source = backup_ops.sqlite_path(c.settings.database_url)
        pages = backup_ops.backup_sqlite(source, dest, progress)
    except backup_ops.BackupError as e:
        c.fail("BACKUP_FAILED", str(e))
    if not c.as_json:
        click.echo("", err=True)
    size = dest.stat().st_size
    c.out(
        {"source": str(source), "backup": str(dest), "pages": pages, "bytes": size},
        f"backed up {source} to {dest} ({pages} pages, {size} bytes)",
    )
    sys.stdout.flush()
