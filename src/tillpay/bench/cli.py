"""``tillpay bench``: run the benchmark matrix and write the results as Markdown and JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from tillpay.bench.requests import WORKLOADS


@click.command()
@click.option(
    "--database",
    "databases",
    multiple=True,
    default=["sqlite"],
    show_default=True,
    help="'sqlite', or a PostgreSQL URL on whose server a fresh database is made (repeatable).",
)
@click.option(
    "--workload",
    "workloads",
    multiple=True,
    type=click.Choice([*WORKLOADS, "all"]),
    default=["pay"],
    show_default=True,
    help="pay: MAPI RSA2 pays; mix: pay, query, refund; confirm: a quarter wait for the customer; "
    "dialects: MAPI, Open Platform and Antom at once (repeatable).",
)
@click.option(
    "--servers",
    "servers",
    multiple=True,
    type=int,
    default=[1],
    show_default=True,
    help="Server processes (repeatable: one run each).",
)
@click.option("--separate-worker", is_flag=True, help="serve --no-worker plus one `tillpay worker` process.")
@click.option("--seconds", default=60, show_default=True, help="Length of each measured run.")
@click.option("--warmup", default=5, show_default=True, help="Warm-up before each run, in seconds.")
@click.option("--connections", default=16, show_default=True, help="Keep-alive connections of the load.")
@click.option("--threads", default=2, show_default=True, help="Load-generator threads.")
@click.option(
    "--users", type=int, help="Wallets to create first (3,000; more are added if the rate needs them)."
)
@click.option("--merchants", default=4, show_default=True)
@click.option(
    "--generator",
    type=click.Choice(["auto", "wrk", "python"]),
    default="auto",
    show_default=True,
    help="wrk (C, from Debian's wrk package) or the asyncio client; auto: wrk if installed.",
)
@click.option("--limits/--no-limits", default=True, show_default=True, help="Measure the same-run limits.")
@click.option("--limit-seconds", default=10, show_default=True, help="Length of each limit measurement.")
@click.option("--profile", type=click.Path(file_okay=False), help="Record the servers with py-spy here.")
@click.option(
    "--out",
    default="bench-results",
    show_default=True,
    help="Write OUT.md and OUT.json (the latest results table and every figure).",
)
@click.option(
    "--server-pythonpath",
    type=click.Path(file_okay=False, exists=True),
    help="Serve another checkout's Tillpay (its src folder) under the same load, to compare builds.",
)
@click.option(
    "--in-process",
    "in_process",
    type=click.IntRange(4, 100_000),
    metavar="PAYS",
    help="Instead of the load runs: PAYS signed pays and as many signed no-op requests, one at a time "
    "through the app in this process, and the CPU of each (the pay's own cost, without load noise).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON instead of the table.")
def bench(
    databases: tuple[str, ...],
    workloads: tuple[str, ...],
    servers: tuple[int, ...],
    separate_worker: bool,
    seconds: int,
    warmup: int,
    connections: int,
    threads: int,
    users: int | None,
    merchants: int,
    generator: str,
    limits: bool,
    limit_seconds: int,
    profile: str | None,
    out: str,
    server_pythonpath: str | None,
    in_process: int | None,
    as_json: bool,
) -> None:
    """Measure sustained pays per second over loopback, with this machine's limits in the same run.

    With --in-process, measure instead what one pay costs in CPU above the signed no-op's, one request at
    a time in this process (docs/benchmark.md, "The pay's own cost, in one process")."""
    from tillpay.bench import data, loadgen, report
    from tillpay.bench.run import RunConfig, RunResult, run

    if seconds < 1 or seconds > 120:
        raise click.BadParameter(
            "between 1 and 120 (prepared payment codes live three minutes)", param_hint="--seconds"
        )
    for db in databases:
        try:
            data.check_target(db)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--database") from None
    # The results' folder is made (or refused) before the minutes of measuring, not after.
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.BadParameter(
            f"cannot make the folder for {out}: {e.strerror}", param_hint="--out"
        ) from None
    if in_process is not None:
        _in_process(list(databases), in_process, out, as_json)
        return
    if generator == "auto":
        generator = "wrk" if loadgen.wrk_available() else "python"
    chosen = list(WORKLOADS) if "all" in workloads else list(dict.fromkeys(workloads))
    info = report.machine(list(databases))
    results: list[RunResult] = []
    for db in databases:
        for workload in chosen:
            for n in servers:
                cfg = RunConfig(
                    database=db,
                    workload=workload,
                    servers=n,
                    separate_worker=separate_worker,
                    seconds=seconds,
                    warmup=warmup,
                    connections=connections,
                    threads=threads,
                    users=users or 3_000,
                    merchants=merchants,
                    generator=generator,
                    profile=profile,
                    limits=limits,
                    limit_seconds=limit_seconds,
                    server_pythonpath=server_pythonpath,
                )
                name = "sqlite" if db == "sqlite" else "postgresql"
                click.echo(f"== {name}, {workload}, {n} server process(es)", err=True)
                results.append(run(cfg, say=lambda s: click.echo(f"   {s}", err=True)))
    table = report.markdown(results, info, load_after=[round(x, 2) for x in os.getloadavg()])
    verdicts = report.targets(results)
    doc = {
        "machine": info,
        "command": " ".join(["tillpay", *sys.argv[1:]]),
        "runs": [r.to_json() for r in results],
        "targets": verdicts,
    }
    Path(f"{out}.md").write_text(
        table + ("\n" + "\n".join(f"- {v}" for v in verdicts) + "\n" if verdicts else "")
    )
    Path(f"{out}.json").write_text(json.dumps(doc, indent=2, default=str))
    click.echo(json.dumps(doc, indent=2, default=str) if as_json else table)
    for v in verdicts:
        click.echo(f"target: {v}")
    if not all(r.counts_match and r.audit_ok for r in results):
        sys.exit(1)


def _in_process(databases: list[str], pays: int, out: str, as_json: bool) -> None:
    from tillpay.bench import inprocess, report

    info = report.machine(databases)
    results = []
    for db in databases:
        click.echo(
            f"== {'sqlite' if db == 'sqlite' else 'postgresql'}, {pays:,} pays in one process", err=True
        )
        results.append(inprocess.measure(db, pays, say=lambda s: click.echo(f"   {s}", err=True)))
    table = inprocess.markdown(results)
    doc = {
        "machine": info,
        "command": " ".join(["tillpay", *sys.argv[1:]]),
        "in_process": [r.to_json() for r in results],
    }
    Path(f"{out}.md").write_text(f"Measured {info['when']}, one request at a time in one process.\n\n{table}")
    Path(f"{out}.json").write_text(json.dumps(doc, indent=2, default=str))
    click.echo(json.dumps(doc, indent=2, default=str) if as_json else table)
