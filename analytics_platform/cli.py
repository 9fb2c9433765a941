"""`analytics-platform`: the one command a user needs on top of Dagster's own."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
import warnings

import click

from analytics_platform.cli_keys import tenants_keys, tenants_origins
from analytics_platform.cli_tenants import platform_stores, tenant_argument, tenants
from analytics_platform.redaction import redact
from analytics_platform.settings import LOG_FORMATS, load_settings


@click.group()
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    envvar="LOG_FORMAT",
    default="text",
    show_default=True,
    help="json: every log record on stderr as one JSON object per line (or LOG_FORMAT=json).",
)
@click.pass_context
def main(ctx: click.Context, log_format: str) -> None:
    """Multi-tenant product analytics on Dagster, dbt, Postgres and ClickHouse."""
    # Library notices (beta parameters, XDG_RUNTIME_DIR) are for developers, not for the
    # person running the demo; pytest still shows the ones that concern our code.
    warnings.filterwarnings("ignore", message=r".*(is currently in beta|XDG_RUNTIME_DIR)")
    if log_format == "json":
        _json_logs(ctx)


def _json_logs(ctx: click.Context) -> None:
    """JSON lines for log shippers: the command's start and end, and every library record."""
    import logging
    import time

    from analytics_platform.service.observability.logs import use_json_logs

    use_json_logs(service="cli")
    logging.captureWarnings(True)
    log = logging.getLogger("analytics_platform.cli")
    command = ctx.invoked_subcommand or ""  # never its arguments: they may hold a key
    started = time.perf_counter()
    log.info("command started", extra={"command": command})
    ctx.call_on_close(
        lambda: log.info(
            "command finished",
            extra={
                "command": command,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
    )


@main.command()
def prepare() -> None:
    """Parse the dbt project into dbt_project/target/manifest.json."""
    from analytics_platform.dbt_project import prepare as prepare_manifest

    click.echo(f"dbt manifest written to {prepare_manifest()}")


@main.command()
@click.option("--days", default=7, show_default=True, help="Days of events per tenant.")
@click.option("--events-per-day", default=400, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default="2026-11-01",
    show_default=True,
    help="First day of generated events (UTC).",
)
def demo(days: int, events_per_day: int, start: dt.datetime) -> None:
    """Run the whole pipeline on synthetic events for 3 tenants, then print a summary.

    The first tenant's events go through a collector the demo starts and stops.
    """
    from analytics_platform.demo.collector_feed import CollectorError
    from analytics_platform.demo.launch import LaunchRefused, RunNotSuccessful, WebserverError
    from analytics_platform.demo.pipeline import format_summary, run_demo

    try:
        summary = run_demo(days=days, events_per_day=events_per_day, start=start.date())
    except (RunNotSuccessful, WebserverError, LaunchRefused, CollectorError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(format_summary(summary))
    if summary.mismatches:
        raise SystemExit(1)


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def dev(port: int, host: str) -> None:
    """Start the embedded stack and `dagster dev` (webserver + daemon) on the same storage."""
    from analytics_platform import stack

    stack.activate()
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    args = [dagster, "dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)]
    click.echo(f"Dagster UI on http://{host}:{port} (Ctrl-C stops it)")
    os.execv(dagster, args)


@main.command()
def env() -> None:
    """Print the settings as shell exports: eval "$(analytics-platform env)"."""
    from analytics_platform import stack

    for name, value in stack.activate().items():
        click.echo(f"export {name}={shlex.quote(value)}")


@main.command()
def migrate() -> None:
    """Create or upgrade the warehouse schemas (run before the code server starts)."""
    from analytics_platform import stack
    from analytics_platform.resources.postgres import PostgresResource

    env = stack.platform_environment(load_settings())
    applied = PostgresResource(url=env["DATABASE_URL"]).migrate_warehouse()
    where = redact(env["DATABASE_URL"])
    click.echo(f"warehouse {where}: " + ("migrated" if applied else "already current"))


@main.command()
def stop() -> None:
    """Stop the embedded Postgres server."""
    from analytics_platform import stack

    folder = load_settings().embedded_postgres_dir
    stopped = stack.stop_embedded_postgres(folder)
    click.echo(
        f"stopped embedded Postgres in {folder}" if stopped else "embedded Postgres is not running"
    )


main.add_command(tenants)
tenants.add_command(tenants_keys)
tenants.add_command(tenants_origins)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8088, show_default=True)
def collector(host: str, port: int) -> None:
    """Serve the event collector: POST /v1/events and /collect (write key), GET /health.

    Accepted events land durably under LANDING_DIR/<tenant>/<day>/ (COLLECTOR_* settings).
    """
    from analytics_platform import stack
    from analytics_platform.service.server import serve
    from analytics_platform.settings import SettingsError, collector_settings

    try:
        settings = collector_settings()
    except SettingsError as err:
        raise click.ClickException(str(err)) from err
    from analytics_platform.resources.postgres import PostgresResource

    # Only the warehouse (for keys): no Dagster files are needed to run a collector.
    database_url = stack.warehouse_url(load_settings())
    PostgresResource(url=database_url).ensure_warehouse()
    serve(settings, database_url, host, port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8089, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the read API: GET /v1/... for read keys (tenants keys create T --kind read).

    A process of its own, apart from the collector, so reads never delay an ack.
    """
    from analytics_platform import stack
    from analytics_platform.api.server import serve
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.settings import (
        SettingsError,
        api_clickhouse_wait_seconds,
        api_response_cache_bytes,
    )

    try:
        wait_seconds = api_clickhouse_wait_seconds()
        cache_bytes = api_response_cache_bytes()
    except SettingsError as err:
        raise click.ClickException(str(err)) from err
    settings = load_settings()
    database_url = stack.warehouse_url(settings)
    PostgresResource(url=database_url).ensure_warehouse()
    clickhouse_url = settings.clickhouse_url or settings.embedded_clickhouse_url
    serve(database_url, clickhouse_url, wait_seconds, host, port, cache_bytes)


@main.command()
@click.argument("target", metavar="MODEL.COLUMN")
@click.option(
    "--format", "output", type=click.Choice(["tree", "json"]), default="tree", show_default=True
)
def lineage(target: str, output: str) -> None:
    """Upstream columns of MODEL.COLUMN, down to the raw tables (e.g. fct_sessions.channel).

    Read from the column lineage the latest materializations carry in the Dagster instance.
    """
    from analytics_platform.dbt_project import ManifestMissing, manifest_path
    from analytics_platform.explore.lineage import (
        LineageError,
        dbt_models,
        format_tree,
        latest_column_lineage,
        lineage_tree,
        parse_target,
        read_manifest,
    )

    try:
        model, column = parse_target(target)
        models = dbt_models(read_manifest(manifest_path()))
        with platform_stores() as (_postgres, _clickhouse, instance):
            tree = lineage_tree(
                model, column, lambda asset: latest_column_lineage(instance, asset), models
            )
    except (LineageError, ManifestMissing) as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(tree.as_dict(), indent=2) if output == "json" else format_tree(tree))


@main.command()
@click.argument("tenant_id")
@click.argument("sql")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--max-rows", type=click.IntRange(1, 10_000_000), default=10_000, show_default=True)
def query(tenant_id: str, sql: str, output: str, max_rows: int) -> None:
    """Run read-only SQL in TENANT_ID's ClickHouse database (SQL "-" reads standard input).

    Unqualified tables are the tenant's (SELECT * FROM fct_daily_metrics). Writes, settings,
    other databases and table functions that reach outside are refused.
    """
    from analytics_platform.explore.output import format_result
    from analytics_platform.explore.query import QueryFailed, TenantDatabaseMissing, run_query
    from analytics_platform.explore.sql_guard import QueryRefused
    from analytics_platform.resources.clickhouse import ClickHouseLockTimeout, ClickHouseResource

    tenant_argument(tenant_id)
    if sql == "-":
        sql = sys.stdin.read()
    settings = load_settings()
    clickhouse = ClickHouseResource(url=settings.clickhouse_url or settings.embedded_clickhouse_url)
    try:
        result = run_query(clickhouse, tenant_id, sql, max_rows=max_rows)
    except QueryRefused as err:
        raise click.ClickException(f"refused: {err}") from err
    except (QueryFailed, TenantDatabaseMissing, ClickHouseLockTimeout) as err:
        raise click.ClickException(str(err)) from err
    click.echo(format_result(result, output))


if __name__ == "__main__":
    main()
