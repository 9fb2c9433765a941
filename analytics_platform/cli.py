"""`analytics-platform`: the one command a user needs on top of Dagster's own."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shlex
import sys
import warnings

import click

from analytics_platform.redaction import redact
from analytics_platform.settings import load_settings


@click.group()
def main() -> None:
    """Multi-tenant product analytics on Dagster, dbt, Postgres and ClickHouse."""
    # Library notices (beta parameters, XDG_RUNTIME_DIR) are for developers, not for the
    # person running the demo; pytest still shows the ones that concern our code.
    warnings.filterwarnings("ignore", message=r".*(is currently in beta|XDG_RUNTIME_DIR)")


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
    """Run the whole pipeline on synthetic events for 3 tenants, then print a summary."""
    from analytics_platform.demo.launch import LaunchRefused, RunNotSuccessful, WebserverError
    from analytics_platform.demo.pipeline import format_summary, run_demo

    try:
        summary = run_demo(days=days, events_per_day=events_per_day, start=start.date())
    except (RunNotSuccessful, WebserverError, LaunchRefused) as err:
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


@main.group()
def tenants() -> None:
    """Register tenants and move them through their lifecycle."""


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _tenant_argument(tenant_id: str) -> str:
    from analytics_platform.tenants.ids import InvalidTenantId, validate_tenant_id

    try:
        return validate_tenant_id(tenant_id)
    except InvalidTenantId as err:
        raise click.BadParameter(str(err), param_hint="TENANT_ID") from err


@contextlib.contextmanager
def _platform():
    """The stores and the Dagster instance, with tenant errors turned into CLI errors."""
    from dagster import DagsterInstance

    from analytics_platform import stack
    from analytics_platform.resources.clickhouse import ClickHouseResource
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.lifecycle import ConfirmationMismatch
    from analytics_platform.tenants.migrations import MigrationError
    from analytics_platform.tenants.registry import TenantNotFound, TenantStateError
    from analytics_platform.tenants.store_binding import StoreMismatch

    env = stack.activate()
    try:
        with DagsterInstance.get() as instance:
            yield (
                PostgresResource(url=env["DATABASE_URL"]),
                ClickHouseResource(url=env["CLICKHOUSE_URL"]),
                instance,
            )
    except (
        TenantNotFound,
        TenantStateError,
        ConfirmationMismatch,
        MigrationError,
        StoreMismatch,
    ) as err:
        raise click.ClickException(str(err)) from err


@tenants.command("add")
@click.argument("tenant_id")
@click.option("--name", "display_name", default=None, help="Display name (default: the id).")
@click.option("--api-base-url", default=None, help="Base URL of the tenant's event export API.")
@click.option(
    "--api-token-env",
    default=None,
    help="NAME of the environment variable that holds the API token (never the token).",
)
@click.option("--retention-days", type=click.IntRange(1, 36500), default=None)
def tenants_add(
    tenant_id: str,
    display_name: str | None,
    api_base_url: str | None,
    api_token_env: str | None,
    retention_days: int | None,
) -> None:
    """Register TENANT_ID, provision its ClickHouse database and add its partitions."""
    from analytics_platform.tenants.lifecycle import provision_tenant
    from analytics_platform.tenants.registry import register_tenant
    from analytics_platform.tenants.store_binding import check_store_binding

    _tenant_argument(tenant_id)
    if api_token_env is not None and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,127}", api_token_env):
        raise click.BadParameter(
            "give the NAME of an environment variable (e.g. ACME_API_TOKEN), not the token",
            param_hint="--api-token-env",
        )
    if api_base_url is not None and not re.match(r"https?://", api_base_url):
        raise click.BadParameter("use an http:// or https:// URL", param_hint="--api-base-url")
    with _platform() as (postgres, clickhouse, instance):
        check_store_binding(postgres, instance)  # before the registry changes, not after
        register_tenant(
            postgres,
            tenant_id,
            display_name,
            api_base_url=api_base_url,
            api_token_env=api_token_env,
            retention_days=retention_days,
            actor=_cli_actor(),
        )
        report = provision_tenant(postgres, clickhouse, instance, tenant_id, actor=_cli_actor())
    click.echo(
        f"tenant {tenant_id} is active: ClickHouse database {report.database}, "
        f"migrations {report.already_applied + report.applied}"
    )


@tenants.command("list")
def tenants_list() -> None:
    """Registered tenants: status, partitions materialized, last data day, ClickHouse database."""
    from analytics_platform.tenants.overview import tenant_overview

    with _platform() as (postgres, clickhouse, instance):
        rows = tenant_overview(postgres, clickhouse, instance)
        where = redact(postgres.url)
    header = (
        f"{'tenant':<22}{'status':<15}{'partitions':>11}  {'last data day':<15}"
        f"{'clickhouse database':<30}{'schema':>7}  name"
    )
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row.tenant_id:<22}{row.status:<15}{row.partitions_materialized:>11}  "
            f"{row.last_data_day or '-'!s:<15}{row.database:<30}{row.schema_version:>7}  "
            f"{row.display_name}"
        )
    if not rows:
        click.echo(f"(no tenants in {where})")


@tenants.command("suspend")
@click.argument("tenant_id")
def tenants_suspend(tenant_id: str) -> None:
    """Stop sensors and schedules from starting runs for TENANT_ID; its data stays."""
    from analytics_platform.tenants.lifecycle import suspend_tenant

    _tenant_argument(tenant_id)
    with _platform() as (postgres, _clickhouse, instance):
        suspend_tenant(postgres, instance, tenant_id, actor=_cli_actor())
    click.echo(f"tenant {tenant_id} is suspended")


@tenants.command("resume")
@click.argument("tenant_id")
def tenants_resume(tenant_id: str) -> None:
    """Re-activate a suspended tenant (applying migrations it missed)."""
    from analytics_platform.tenants.lifecycle import resume_tenant

    _tenant_argument(tenant_id)
    with _platform() as (postgres, clickhouse, instance):
        report = resume_tenant(postgres, clickhouse, instance, tenant_id, actor=_cli_actor())
    click.echo(f"tenant {tenant_id} is active (migrations applied now: {report.applied or 'none'})")


@tenants.command("deprovision")
@click.argument("tenant_id")
@click.option(
    "--confirm",
    prompt="Type the tenant id again to delete all of its data",
    help="The tenant id again, to confirm.",
)
def tenants_deprovision(tenant_id: str, confirm: str) -> None:
    """Delete TENANT_ID's data in every layer and its ClickHouse database; keep the audit."""
    from analytics_platform.tenants.lifecycle import deprovision_tenant

    _tenant_argument(tenant_id)
    with _platform() as (postgres, clickhouse, instance):
        report = deprovision_tenant(
            postgres, clickhouse, instance, tenant_id, confirm=confirm, actor=_cli_actor()
        )
    deleted = ", ".join(f"{table} {n}" for table, n in report.rows_deleted.items() if n)
    click.echo(
        f"tenant {tenant_id} is deprovisioned: dropped {report.database}; "
        f"rows deleted: {deleted or 'none'}"
    )


@tenants.command("bind-instance")
@click.option("--confirm", required=True, help="This warehouse's id, as the refusal printed it.")
def tenants_bind_instance(confirm: str) -> None:
    """Let the Dagster instance mirror this warehouse's tenants (after replacing the warehouse)."""
    from analytics_platform.tenants.registry import sync_tenant_partitions
    from analytics_platform.tenants.store_binding import bind_instance

    with _platform() as (postgres, _clickhouse, instance):
        binding = bind_instance(postgres, instance, confirm=confirm)
        sync = sync_tenant_partitions(postgres, instance)
    click.echo(
        f"the Dagster instance now mirrors warehouse {binding.warehouse_id} "
        f"({binding.warehouse}): partitions added {len(sync.add)}, removed {len(sync.remove)}, "
        f"kept for unregistered tenants {len(sync.unregistered)}"
    )


@tenants.command("clickhouse-reader")
@click.argument("tenant_id")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The reader's password (prompted; only its SHA-256 is sent).",
)
@click.option("--apply", is_flag=True, help="Run the SQL on the ClickHouse server.")
def tenants_clickhouse_reader(tenant_id: str, password: str, apply: bool) -> None:
    """Print (or --apply) the SQL for a user that can read only TENANT_ID's database."""
    from analytics_platform.resources.clickhouse import ClickHouseResource
    from analytics_platform.settings import load_settings
    from analytics_platform.tenants.grants import password_hash, tenant_reader_sql

    _tenant_argument(tenant_id)
    try:
        digest = password_hash(password)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--password") from err
    settings = load_settings()
    clickhouse = ClickHouseResource(url=settings.clickhouse_url or settings.embedded_clickhouse_url)
    statements = tenant_reader_sql(clickhouse, tenant_id, digest)
    if not apply:
        click.echo(";\n".join(statements) + ";")
        return
    if clickhouse.is_embedded:
        raise click.ClickException(
            "embedded chDB has no users or grants; set CLICKHOUSE_URL to a ClickHouse server, "
            "or run the printed SQL there yourself"
        )
    with clickhouse.session() as session:
        for statement in statements:
            session.command(statement)
    click.echo(f"user reader_{tenant_id} can read {clickhouse.database_for(tenant_id)} only")


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
        with _platform() as (_postgres, _clickhouse, instance):
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

    _tenant_argument(tenant_id)
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
