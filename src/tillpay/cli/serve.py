"""``tillpay serve`` and ``tillpay migrate``: the gateway's server and its database schema."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

import click

from tillpay import __version__, shutdown
from tillpay.cli.common import Ctx, pass_ctx
from tillpay.store.migrate import upgrade

# ---------------------------------------------------------------------------------------------- serve


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--demo", is_flag=True, help="Create the demo merchant, wallet and rates on first start and print them."
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Sandbox mode (TILLPAY_MODE=sandbox): self top-up and console test payments, never settled.",
)
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes.")
@click.option(
    "--no-worker", is_flag=True, help="Do not deliver notifications or close expired payments here."
)
@click.option("--public-url", help="The URL customers reach this server on (for QR codes).")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate (PEM, with its chain); needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="The certificate's private key (PEM)."
)
@click.option("--max-body-bytes", type=int, help="Largest request body (TILLPAY_MAX_BODY_BYTES).")
@click.option(
    "--header-timeout", type=float, help="Seconds for a request head (TILLPAY_HEADER_TIMEOUT_SECONDS)."
)
@click.option("--body-timeout", type=float, help="Seconds for a request body (TILLPAY_BODY_TIMEOUT_SECONDS).")
@click.option(
    "--keep-alive", type=int, help="Seconds an idle connection stays open (TILLPAY_KEEP_ALIVE_SECONDS)."
)
@click.option(
    "--limit-concurrency",
    type=int,
    help="Most connections and requests per process; more get 503 (TILLPAY_LIMIT_CONCURRENCY).",
)
@pass_ctx
def serve(
    c: Ctx,
    host: str,
    port: int,
    demo: bool,
    sandbox: bool,
    workers: int,
    no_worker: bool,
    public_url: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    max_body_bytes: int | None,
    header_timeout: float | None,  # float-ok: seconds
    body_timeout: float | None,  # float-ok: seconds
    keep_alive: int | None,
    limit_concurrency: int | None,
) -> None:
    """Run the gateway (and, unless --no-worker, the notification and expiry worker).

    Production unless ``--sandbox``, ``--demo`` (which implies it) or ``TILLPAY_MODE=sandbox``.
    """
    shutdown.exit_if_requested()
    import uvicorn

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    scheme = "https" if tls_cert else "http"
    settings = c.settings.model_copy(
        update={
            "public_url": public_url
            or (c.settings.public_url if "TILLPAY_PUBLIC_URL" in os.environ else f"{scheme}://{host}:{port}"),
            "embedded_worker": c.settings.embedded_worker and not no_worker,
            "mode": "sandbox" if demo or sandbox else c.settings.mode,
        }
        | {
            key: value
            for key, value in (
                ("max_body_bytes", max_body_bytes),
                ("header_timeout_seconds", header_timeout),
                ("body_timeout_seconds", body_timeout),
                ("keep_alive_seconds", keep_alive),
                ("limit_concurrency", limit_concurrency),
            )
            if value is not None
        }
    )
    upgrade(settings.database_url)
    shutdown.exit_if_requested()
    if demo:
        from tillpay.demo import ensure_demo, print_demo

        info = asyncio.run(ensure_demo(settings))
        print_demo(info, settings, as_json=c.as_json)
        shutdown.exit_if_requested()
    click.echo(
        f"Tillpay {__version__} on {settings.public_url}, mode {settings.mode}"
        + (": self top-up and test payments on, never settled" if settings.sandbox else ""),
        err=True,
    )
    os.environ["TILLPAY_MODE"] = settings.mode
    os.environ["TILLPAY_DATABASE_URL"] = settings.database_url
    os.environ["TILLPAY_PUBLIC_URL"] = settings.public_url
    os.environ["TILLPAY_EMBEDDED_WORKER"] = "true" if settings.embedded_worker else "false"
    # The app (and each worker process) reads the limits from the environment.
    os.environ["TILLPAY_MAX_BODY_BYTES"] = str(settings.max_body_bytes)
    os.environ["TILLPAY_HEADER_TIMEOUT_SECONDS"] = str(settings.header_timeout_seconds)
    os.environ["TILLPAY_BODY_TIMEOUT_SECONDS"] = str(settings.body_timeout_seconds)
    # /metrics sums every server process's counters through files in one fresh directory
    # (prometheus-client's multiprocess mode, chosen when it is first imported: nothing here has yet).
    metrics_dir = tempfile.mkdtemp(prefix="tillpay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "tillpay.web.asgi:create",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            # httptools (llhttp) with a deadline and a size limit for the request head (uvicorn has
            # neither for it), then idle and concurrency limits.
            http="tillpay.web.limits:TimedHttpToolsProtocol",
            timeout_keep_alive=settings.keep_alive_seconds,
            limit_concurrency=settings.limit_concurrency,
            h11_max_incomplete_event_size=settings.max_header_bytes,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    shutdown.exit_if_requested()  # uvicorn hands the SIGTERM it stopped on back to our handler


@click.command()
@pass_ctx
def migrate(c: Ctx) -> None:
    """Create or upgrade the database schema (every command does this on its own too)."""
    upgrade(c.settings.database_url)
    c.out({"status": "ok"}, "schema is up to date")
