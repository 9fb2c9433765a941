"""`analytics-platform tenants keys ...` and `tenants origins ...`: the collector's front door.

A key's secret is printed once, by `keys create`, and never again: the
warehouse keeps only its hash. Like the other `tenants` commands, arguments are
checked before a store is touched (exit 2), and a refusal is one line on stderr
saying what to do (exit 1).
"""

from __future__ import annotations

import datetime as dt
import json

import click

from analytics_platform.cli_tenants import cli_actor, tenant_argument, warehouse_store


def _utc(at: dt.datetime | None) -> str:
    return (
        "-" if at is None else at.astimezone(dt.timezone.utc).isoformat(sep=" ", timespec="seconds")
    )


def _iso(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.timezone.utc).isoformat()


@click.group("keys")
def tenants_keys() -> None:
    """A tenant's API keys: write keys for trackers, read keys for the read API."""


@tenants_keys.command("create")
@click.argument("tenant_id")
@click.option("--kind", type=click.Choice(["write", "read"]), default="write", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The new key (secret included) as JSON.")
def keys_create(tenant_id: str, kind: str, as_json: bool) -> None:
    """Create a key for TENANT_ID and print its secret, once: only its hash is kept."""
    from analytics_platform.tenants.keys import create_key

    tenant_argument(tenant_id)
    with warehouse_store() as postgres:
        key, secret = create_key(postgres, tenant_id, kind, actor=cli_actor())
    notice = "This is the only time the key is shown: store it now (only its hash is kept)."
    if as_json:
        record = {"key_id": key.key_id, "tenant_id": key.tenant_id, "kind": key.kind}
        click.echo(json.dumps({**record, "created_at": _iso(key.created_at), "secret": secret}))
        click.echo(notice, err=True)
        return
    click.echo(f"tenant {tenant_id}: new {kind} key {key.key_id}")
    click.echo(secret)
    click.echo(notice)


@tenants_keys.command("list")
@click.argument("tenant_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of the keys instead.")
def keys_list(tenant_id: str, as_json: bool) -> None:
    """TENANT_ID's keys, revoked ones included (ids only: secrets are never kept)."""
    from analytics_platform.tenants.keys import list_keys

    tenant_argument(tenant_id)
    with warehouse_store() as postgres:
        keys = list_keys(postgres, tenant_id)
    if as_json:
        rows = [
            {
                "key_id": k.key_id,
                "kind": k.kind,
                "created_at": _iso(k.created_at),
                "created_by": k.created_by,
                "last_used_at": _iso(k.last_used_at),
                "revoked_at": _iso(k.revoked_at),
            }
            for k in keys
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'key id':<14}{'kind':<7}{'created (UTC)':<27}{'last used':<27}revoked")
    for k in keys:
        click.echo(
            f"{k.key_id:<14}{k.kind:<7}{_utc(k.created_at):<27}{_utc(k.last_used_at):<27}"
            f"{_utc(k.revoked_at) if k.is_revoked else ''}"
        )
    if not keys:
        click.echo(
            f"(tenant {tenant_id} has no keys: analytics-platform tenants keys create {tenant_id})"
        )


@tenants_keys.command("revoke")
@click.argument("tenant_id")
@click.argument("key_id")
def keys_revoke(tenant_id: str, key_id: str) -> None:
    """Revoke KEY_ID (as `keys list` shows it): refused by collectors within seconds."""
    from analytics_platform.settings import key_cache_seconds
    from analytics_platform.tenants.keys import revoke_key

    tenant_argument(tenant_id)
    with warehouse_store() as postgres:
        key = revoke_key(postgres, tenant_id, key_id, actor=cli_actor())
    click.echo(
        f"tenant {tenant_id}: key {key.key_id} revoked at {_utc(key.revoked_at)}; "
        f"running services refuse it within {key_cache_seconds():g} s (KEY_CACHE_SECONDS)"
    )


@click.group("origins")
def tenants_origins() -> None:
    """The browser origins allowed to send a tenant's events (CORS)."""


def _origin_arguments(origins: tuple[str, ...]) -> list[str]:
    from analytics_platform.tenants.origins import InvalidOrigin, normalize_origins

    try:
        return normalize_origins(origins)
    except InvalidOrigin as err:
        raise click.BadParameter(str(err), param_hint="ORIGIN") from err


@tenants_origins.command("add")
@click.argument("tenant_id")
@click.argument("origins", metavar="ORIGIN...", nargs=-1, required=True)
def origins_add(tenant_id: str, origins: tuple[str, ...]) -> None:
    """Allow browsers on these origins (scheme://host[:port]) to send TENANT_ID's events."""
    from analytics_platform.tenants.origins import add_origins

    tenant_argument(tenant_id)
    wanted = _origin_arguments(origins)
    with warehouse_store() as postgres:
        added = add_origins(postgres, tenant_id, wanted, actor=cli_actor())
    kept = [origin for origin in wanted if origin not in added]
    click.echo(
        f"tenant {tenant_id}: origins allowed: {', '.join(added) or 'none new'}"
        + (f"; already allowed: {', '.join(kept)}" if kept else "")
    )


@tenants_origins.command("remove")
@click.argument("tenant_id")
@click.argument("origin")
def origins_remove(tenant_id: str, origin: str) -> None:
    """Stop allowing ORIGIN for TENANT_ID."""
    from analytics_platform.tenants.origins import remove_origin

    tenant_argument(tenant_id)
    (normalized,) = _origin_arguments((origin,))
    with warehouse_store() as postgres:
        remove_origin(postgres, tenant_id, normalized, actor=cli_actor())
    click.echo(f"tenant {tenant_id}: origin {normalized} removed")


@tenants_origins.command("list")
@click.argument("tenant_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of the origins instead.")
def origins_list(tenant_id: str, as_json: bool) -> None:
    """TENANT_ID's allowed origins, with when each was added."""
    from analytics_platform.tenants.origins import list_origins

    tenant_argument(tenant_id)
    with warehouse_store() as postgres:
        origins = list_origins(postgres, tenant_id)
    if as_json:
        rows = [{"origin": o.origin, "added_at": _iso(o.added_at)} for o in origins]
        click.echo(json.dumps(rows, indent=2))
        return
    width = max([len("origin"), *(len(o.origin) for o in origins)]) + 2
    click.echo(f"{'origin':<{width}}added at (UTC)")
    for o in origins:
        click.echo(f"{o.origin:<{width}}{_utc(o.added_at)}")
    if not origins:
        click.echo(
            f"(tenant {tenant_id} allows no browser origins: "
            f"analytics-platform tenants origins add {tenant_id} https://...)"
        )
