"""`analytics-platform tenants ...`: the registry, the lifecycle and the sites of tenants.

Each command validates its arguments before it touches a store (exit 2, naming
the argument), and turns a refusal of the registry into one line on stderr
(exit 1) that says what to do instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import click

from analytics_platform.redaction import redact


@click.group()
def tenants() -> None:
    """Register tenants, move them through their lifecycle and manage their sites."""


def cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def tenant_argument(tenant_id: str) -> str:
    from analytics_platform.tenants.ids import InvalidTenantId, validate_tenant_id

    try:
        return validate_tenant_id(tenant_id)
    except InvalidTenantId as err:
        raise click.BadParameter(str(err), param_hint="TENANT_ID") from err


def _refusals() -> tuple[type[Exception], ...]:
    """The registry's refusals: each message names the fix, so the CLI prints it as is."""
    from analytics_platform.tenants.errors import (
        KeyRefused,
        OriginRefused,
        SiteRefused,
        TenantNotFound,
        TenantStateError,
    )
    from analytics_platform.tenants.lifecycle import ConfirmationMismatch
    from analytics_platform.tenants.migrations import MigrationError
    from analytics_platform.tenants.store_binding import StoreMismatch

    return (
        TenantNotFound,
        TenantStateError,
        SiteRefused,
        KeyRefused,
        OriginRefused,
        ConfirmationMismatch,
        MigrationError,
        StoreMismatch,
    )


@contextlib.contextmanager
def platform_stores() -> Iterator[tuple]:
    """The stores and the Dagster instance, with tenant errors turned into CLI errors."""
    from dagster import DagsterInstance

    from analytics_platform import stack
    from analytics_platform.resources.clickhouse import ClickHouseResource
    from analytics_platform.resources.postgres import PostgresResource

    env = stack.activate()
    try:
        with DagsterInstance.get() as instance:
            yield (
                PostgresResource(url=env["DATABASE_URL"]),
                ClickHouseResource(url=env["CLICKHOUSE_URL"]),
                instance,
            )
    except _refusals() as err:
        raise click.ClickException(str(err)) from err


@contextlib.contextmanager
def warehouse_store() -> Iterator:
    """The warehouse alone (sites touch neither ClickHouse nor the Dagster instance)."""
    from analytics_platform import stack
    from analytics_platform.resources.postgres import PostgresResource

    env = stack.activate()
    try:
        yield PostgresResource(url=env["DATABASE_URL"])
    except _refusals() as err:
        raise click.ClickException(str(err)) from err


def _site_arguments(site_ids: tuple[str, ...], param_hint: str) -> list[str]:
    from analytics_platform.tenants.ids import InvalidSiteId
    from analytics_platform.tenants.sites import validate_site_ids

    try:
        return validate_site_ids(site_ids)
    except InvalidSiteId as err:
        raise click.BadParameter(str(err), param_hint=param_hint) from err


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
@click.option(
    "--site",
    "site_ids",
    multiple=True,
    help="A site id the tenant's trackers send as siteId (repeatable); its own id always is.",
)
def tenants_add(
    tenant_id: str,
    display_name: str | None,
    api_base_url: str | None,
    api_token_env: str | None,
    retention_days: int | None,
    site_ids: tuple[str, ...],
) -> None:
    """Register TENANT_ID with its sites, provision its ClickHouse database, add its partitions."""
    from analytics_platform.tenants.lifecycle import provision_tenant
    from analytics_platform.tenants.registry import register_tenant
    from analytics_platform.tenants.sites import list_sites
    from analytics_platform.tenants.store_binding import check_store_binding

    tenant_argument(tenant_id)
    if api_token_env is not None and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,127}", api_token_env):
        raise click.BadParameter(
            "give the NAME of an environment variable (e.g. ACME_API_TOKEN), not the token",
            param_hint="--api-token-env",
        )
    if api_base_url is not None and not re.match(r"https?://", api_base_url):
        raise click.BadParameter("use an http:// or https:// URL", param_hint="--api-base-url")
    sites = _site_arguments(site_ids, "--site")
    with platform_stores() as (postgres, clickhouse, instance):
        check_store_binding(postgres, instance)  # before the registry changes, not after
        register_tenant(
            postgres,
            tenant_id,
            display_name,
            api_base_url=api_base_url,
            api_token_env=api_token_env,
            retention_days=retention_days,
            sites=sites,
            actor=cli_actor(),
        )
        report = provision_tenant(postgres, clickhouse, instance, tenant_id, actor=cli_actor())
        owned = list_sites(postgres, tenant_id)
    click.echo(
        f"tenant {tenant_id} is active: ClickHouse database {report.database}, "
        f"migrations {report.already_applied + report.applied}, "
        f"sites {', '.join(site.site_id for site in owned)}"
    )


@tenants.command("list")
def tenants_list() -> None:
    """Registered tenants: status, partitions, last data day, ClickHouse database, sites."""
    from analytics_platform.tenants.overview import tenant_overview

    with platform_stores() as (postgres, clickhouse, instance):
        rows = tenant_overview(postgres, clickhouse, instance)
        where = redact(postgres.url)
    sites = {row.tenant_id: _sites_cell(row.sites) for row in rows}
    width = max([len("sites"), *map(len, sites.values())]) + 2
    header = (
        f"{'tenant':<22}{'status':<15}{'partitions':>11}  {'last data day':<15}"
        f"{'clickhouse database':<30}{'schema':>7}  {'sites':<{width}}name"
    )
    click.echo(header)
    for row in rows:
        click.echo(
            f"{row.tenant_id:<22}{row.status:<15}{row.partitions_materialized:>11}  "
            f"{row.last_data_day or '-'!s:<15}{row.database:<30}{row.schema_version:>7}  "
            f"{sites[row.tenant_id]:<{width}}{row.display_name}"
        )
    if not rows:
        click.echo(f"(no tenants in {where})")


def _sites_cell(sites: tuple[str, ...], shown: int = 3) -> str:
    """The first sites, comma-separated, and how many more (`tenants sites list` has them all)."""
    if not sites:
        return "-"
    more = f",+{len(sites) - shown}" if len(sites) > shown else ""
    return ",".join(sites[:shown]) + more


@tenants.command("suspend")
@click.argument("tenant_id")
def tenants_suspend(tenant_id: str) -> None:
    """Stop sensors and schedules from starting runs for TENANT_ID; its data stays."""
    from analytics_platform.tenants.lifecycle import suspend_tenant

    tenant_argument(tenant_id)
    with platform_stores() as (postgres, _clickhouse, instance):
        suspend_tenant(postgres, instance, tenant_id, actor=cli_actor())
    click.echo(f"tenant {tenant_id} is suspended")


@tenants.command("resume")
@click.argument("tenant_id")
def tenants_resume(tenant_id: str) -> None:
    """Re-activate a suspended tenant (applying migrations it missed)."""
    from analytics_platform.tenants.lifecycle import resume_tenant

    tenant_argument(tenant_id)
    with platform_stores() as (postgres, clickhouse, instance):
        report = resume_tenant(postgres, clickhouse, instance, tenant_id, actor=cli_actor())
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

    tenant_argument(tenant_id)
    with platform_stores() as (postgres, clickhouse, instance):
        report = deprovision_tenant(
            postgres, clickhouse, instance, tenant_id, confirm=confirm, actor=cli_actor()
        )
    deleted = ", ".join(f"{table} {n}" for table, n in report.rows_deleted.items() if n)
    click.echo(
        f"tenant {tenant_id} is deprovisioned: dropped {report.database}; "
        f"rows deleted: {deleted or 'none'}"
    )


@tenants.command("move")
@click.argument("tenant_id")
@click.option(
    "--from-database-url",
    required=True,
    help="The warehouse of the tenant's shard now (that shard's DATABASE_URL).",
)
@click.option(
    "--from-landing-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="That shard's LANDING_DIR: the tenant's folder moves too.",
)
@click.option(
    "--rebuild/--no-rebuild",
    default=True,
    help="Rebuild staging, marts and serving here from the moved raw rows (default: yes).",
)
def tenants_move(
    tenant_id: str, from_database_url: str, from_landing_dir: Path | None, rebuild: bool
) -> None:
    """Move TENANT_ID into this shard from another; suspend it on its shard first.

    Run with this shard's settings (DATABASE_URL, CLICKHOUSE_URL, LANDING_DIR,
    PLATFORM_SHARD): raw rows, quarantine, keys, sites, origins and audit are copied
    in one transaction, the tenant is provisioned here, then rebuilt here.
    """
    import os

    from analytics_platform.partitions import range_tags
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.move import MoveRefused, move_tenant

    tenant_argument(tenant_id)
    with platform_stores() as (postgres, clickhouse, instance):
        landing = None
        if from_landing_dir is not None:
            landing = (from_landing_dir, Path(os.environ["LANDING_DIR"]))
        try:
            report = move_tenant(
                tenant_id,
                source=(PostgresResource(url=from_database_url), None),
                target=(postgres, clickhouse, instance),
                landing=landing,
                actor=cli_actor(),
            )
        except MoveRefused as err:
            raise click.ClickException(str(err)) from err
        copied = ", ".join(f"{table} {n}" for table, n in report.rows.items() if n)
        click.echo(f"tenant {tenant_id} moved here: rows copied: {copied or 'none'}")
        if report.days is None or not rebuild:
            return
        from analytics_platform.definitions import defs

        days = [report.days[0], report.days[1]]
        result = defs.resolve_job_def("rebuild_tenant_days").execute_in_process(
            instance=instance, tags=range_tags([tenant_id], days), raise_on_error=False
        )
        if not result.success:
            raise click.ClickException(
                f"the rebuild of {tenant_id} ({days[0]} to {days[1]}) failed: run "
                f"{result.run_id}; its raw rows are here, launch `rebuild_tenant_days` again"
            )
        click.echo(f"rebuilt {days[0]} to {days[1]} here (run {result.run_id})")


@tenants.command("bind-instance")
@click.option("--confirm", required=True, help="This warehouse's id, as the refusal printed it.")
def tenants_bind_instance(confirm: str) -> None:
    """Let the Dagster instance mirror this warehouse's tenants (after replacing the warehouse)."""
    from analytics_platform.tenants.registry import sync_tenant_partitions
    from analytics_platform.tenants.store_binding import bind_instance

    with platform_stores() as (postgres, _clickhouse, instance):
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

    tenant_argument(tenant_id)
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


@tenants.group("sites")
def tenants_sites() -> None:
    """The site ids a tenant owns; an event naming any other site is quarantined."""


@tenants_sites.command("add")
@click.argument("tenant_id")
@click.argument("site_ids", metavar="SITE_ID...", nargs=-1, required=True)
def tenants_sites_add(tenant_id: str, site_ids: tuple[str, ...]) -> None:
    """Give TENANT_ID these sites (all or none); a site it already owns stays as it is."""
    from analytics_platform.tenants.sites import add_sites

    tenant_argument(tenant_id)
    wanted = _site_arguments(site_ids, "SITE_ID")
    with warehouse_store() as postgres:
        added = add_sites(postgres, tenant_id, wanted, actor=cli_actor())
    kept = [site for site in wanted if site not in added]
    click.echo(
        f"tenant {tenant_id}: sites added: {', '.join(added) or 'none'}"
        + (f"; already its own: {', '.join(kept)}" if kept else "")
    )


@tenants_sites.command("remove")
@click.argument("tenant_id")
@click.argument("site_id")
def tenants_sites_remove(tenant_id: str, site_id: str) -> None:
    """Take SITE_ID from TENANT_ID: its events are quarantined from the next load on."""
    from analytics_platform.tenants.sites import remove_site

    tenant_argument(tenant_id)
    (site_id,) = _site_arguments((site_id,), "SITE_ID")
    with warehouse_store() as postgres:
        remove_site(postgres, tenant_id, site_id, actor=cli_actor())
    click.echo(f"tenant {tenant_id}: site {site_id} removed")


@tenants_sites.command("list")
@click.argument("tenant_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of the sites instead.")
def tenants_sites_list(tenant_id: str, as_json: bool) -> None:
    """TENANT_ID's sites, its default site first, with when each was added."""
    from analytics_platform.tenants.sites import list_sites

    tenant_argument(tenant_id)
    with warehouse_store() as postgres:
        sites = list_sites(postgres, tenant_id)
    if as_json:
        rows = [
            {"site_id": s.site_id, "default": s.is_default, "added_at": s.added_at.isoformat()}
            for s in sites
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    width = max([len("site"), *(len(s.site_id) for s in sites)]) + 2
    click.echo(f"{'site':<{width}}{'added at (UTC)':<27}default")
    for site in sites:
        added = site.added_at.astimezone(dt.timezone.utc).isoformat(sep=" ", timespec="seconds")
        click.echo(f"{site.site_id:<{width}}{added:<27}{'yes' if site.is_default else ''}")
    if not sites:
        click.echo(f"(tenant {tenant_id} has no sites: it is deprovisioned)")
