"""`analytics-platform`: the one command a user needs on top of Dagster's own."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
import warnings

import click

from analytics_platform.settings import load_settings, redact_url


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
    from analytics_platform.demo.pipeline import format_summary, run_demo

    summary = run_demo(days=days, events_per_day=events_per_day, start=start.date())
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
    """Register and list tenants."""


@tenants.command("add")
@click.argument("tenant_id")
@click.option("--name", "display_name", default=None, help="Display name (default: the id).")
def tenants_add(tenant_id: str, display_name: str | None) -> None:
    """Register TENANT_ID and add its partition to the Dagster instance."""
    from dagster import DagsterInstance

    from analytics_platform import stack
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.ids import InvalidTenantId, validate_tenant_id
    from analytics_platform.tenants.registry import register_tenant

    try:
        validate_tenant_id(tenant_id)
    except InvalidTenantId as err:
        raise click.BadParameter(str(err), param_hint="TENANT_ID") from err
    env = stack.activate()
    with DagsterInstance.get() as instance:
        tenant = register_tenant(
            PostgresResource(url=env["DATABASE_URL"]), instance, tenant_id, display_name
        )
    click.echo(f"tenant {tenant.tenant_id} ({tenant.display_name}) is {tenant.status}")


@tenants.command("list")
def tenants_list() -> None:
    """List registered tenants."""
    from analytics_platform import stack
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.registry import list_tenants

    env = stack.activate()
    rows = list_tenants(PostgresResource(url=env["DATABASE_URL"]))
    click.echo(f"{'tenant':<20}{'status':<14}{'created':<22}name")
    for t in rows:
        click.echo(
            f"{t.tenant_id:<20}{t.status:<14}{t.created_at:%Y-%m-%d %H:%M:%S}   {t.display_name}"
        )
    if not rows:
        click.echo(f"(no tenants in {redact_url(env['DATABASE_URL'])})")


if __name__ == "__main__":
    main()
