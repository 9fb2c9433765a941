"""The sites a tenant owns (`platform.tenant_sites`), which its events may name.

A tracker names the site that sent an event in `siteId`/`site_id`; the event
contract quarantines an event naming a site its folder's (or API's) tenant does
not own, as `tenant_mismatch`. Every tenant owns its own id as its default
site, and an event naming no site belongs to it; the default cannot be removed.
A site id belongs to one tenant only, and a registered tenant's id is never
another tenant's site (it is, or will again be, that tenant's default site).
Every added or removed site is audited in the change's own transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.audit import record_audit
from analytics_platform.tenants.errors import SiteRefused, TenantStateError, not_registered
from analytics_platform.tenants.ids import validate_site_id, validate_tenant_id


@dataclass(frozen=True)
class Site:
    site_id: str
    tenant_id: str
    added_at: dt.datetime

    @property
    def is_default(self) -> bool:
        return self.site_id == self.tenant_id


def tenant_sites(postgres: PostgresResource, tenant_id: str) -> frozenset[str]:
    """The site ids `tenant_id` owns: its default site (its own id) and any added."""
    with postgres.connect() as conn:
        return sites_of(conn, tenant_id)


def sites_of(conn: psycopg.Connection, tenant_id: str) -> frozenset[str]:
    rows = conn.execute(
        "SELECT site_id FROM platform.tenant_sites WHERE tenant_id = %s", (tenant_id,)
    ).fetchall()
    return frozenset({tenant_id, *(site for (site,) in rows)})


def add_default_site(conn: psycopg.Connection, tenant_id: str) -> None:
    """Record the tenant's default site (its own id), in the registration's transaction."""
    conn.execute(
        "INSERT INTO platform.tenant_sites (site_id, tenant_id) VALUES (%s, %s) "
        "ON CONFLICT DO NOTHING",
        (tenant_id, tenant_id),
    )


def validate_site_ids(site_ids: Iterable[str]) -> list[str]:
    """The ids in order, each once, or InvalidSiteId for the first bad one (before any write)."""
    return list(dict.fromkeys(validate_site_id(site) for site in site_ids))


def _lock_sites(conn: psycopg.Connection, site_ids: Iterable[str]) -> dict[str, str]:
    """Serialize every claim of these ids (adds, registrations); return the owners of owned ones.

    The lock matters for an id nobody owns yet, where there is no row to lock;
    taking the locks in sorted order keeps two claims from deadlocking.
    """
    ids = sorted(set(site_ids))
    for site_id in ids:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"site|{site_id}",))
    return dict(
        conn.execute(
            "SELECT site_id, tenant_id FROM platform.tenant_sites WHERE site_id = ANY(%s)", (ids,)
        ).fetchall()
    )


def is_registered(conn: psycopg.Connection, tenant_id: str) -> bool:
    """Whether the id is in the registry, in any status (deprovisioned ones included)."""
    row = conn.execute("SELECT 1 FROM platform.tenants WHERE tenant_id = %s", (tenant_id,))
    return row.fetchone() is not None


def _foreign_site(site_id: str) -> SiteRefused:
    return SiteRefused(
        f"site {site_id!r} belongs to another tenant; a site id belongs to one tenant only: "
        "use another site id, or remove it from the tenant that owns it first"
    )


def refuse_tenant_id_taken_as_site(
    conn: psycopg.Connection, tenant_id: str, site_ids: Iterable[str] = ()
) -> None:
    """Refuse to register `tenant_id` when it is already another tenant's site.

    Call in the registration's transaction before it writes, with the sites it
    will claim: their locks, taken here, keep a concurrent `add_sites` from
    claiming any of the ids meanwhile.
    """
    owner = _lock_sites(conn, [tenant_id, *site_ids]).get(tenant_id)
    if owner is not None and owner != tenant_id:
        raise SiteRefused(
            f"cannot register tenant {tenant_id!r}: {tenant_id!r} is a site of another tenant, "
            "and a tenant's id is its default site; choose another tenant id, or remove that "
            "site from the tenant that owns it first"
        )


def claim_sites(
    conn: psycopg.Connection, tenant_id: str, site_ids: Iterable[str], *, actor: str
) -> list[str]:
    """Add `site_ids` to the tenant in `conn`'s transaction; return those that were new.

    A site the tenant already owns is left as it is (no audit row). Raises
    SiteRefused for a site another tenant owns or that is another tenant's id.
    """
    wanted = validate_site_ids(site_ids)
    owners = _lock_sites(conn, wanted)
    added = []
    for site_id in wanted:
        owner = owners.get(site_id)
        if owner == tenant_id:
            continue
        if owner is not None:
            raise _foreign_site(site_id)
        if site_id != tenant_id and is_registered(conn, site_id):
            raise _foreign_site(site_id)
        # clock_timestamp, not the transaction's now(): sites list in the order they were given.
        conn.execute(
            "INSERT INTO platform.tenant_sites (site_id, tenant_id, added_at) "
            "VALUES (%s, %s, clock_timestamp())",
            (site_id, tenant_id),
        )
        record_audit(conn, tenant_id, "site_added", actor, {"site_id": site_id})
        added.append(site_id)
    return added


def lock_tenant(conn: psycopg.Connection, tenant_id: str) -> str:
    """Lock the tenant against deprovisioning (which clears its sites); return its status."""
    # The lock deprovision_tenant takes before it deletes the tenant's rows.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"migrate|{tenant_id}",))
    row = conn.execute(
        "SELECT status FROM platform.tenants WHERE tenant_id = %s FOR SHARE", (tenant_id,)
    ).fetchone()
    if row is None:
        raise not_registered(tenant_id)
    return row[0]


def add_sites(
    postgres: PostgresResource, tenant_id: str, site_ids: Iterable[str], *, actor: str
) -> list[str]:
    """Give the tenant these sites, all or none, each new one audited; return the new ones."""
    validate_tenant_id(tenant_id)
    wanted = validate_site_ids(site_ids)
    postgres.ensure_warehouse()
    with postgres.transaction() as conn:
        if lock_tenant(conn, tenant_id) == "deprovisioned":
            raise TenantStateError(
                f"tenant {tenant_id!r} is deprovisioned and has no sites; register it again "
                f"(analytics-platform tenants add {tenant_id}) before adding sites"
            )
        return claim_sites(conn, tenant_id, wanted, actor=actor)


def add_site(postgres: PostgresResource, tenant_id: str, site_id: str, *, actor: str) -> bool:
    """Give the tenant one site; False when it already had it (nothing written then)."""
    return bool(add_sites(postgres, tenant_id, [site_id], actor=actor))


def remove_site(postgres: PostgresResource, tenant_id: str, site_id: str, *, actor: str) -> None:
    """Take a site from the tenant (audited); its events are quarantined from then on."""
    validate_tenant_id(tenant_id)
    validate_site_id(site_id)
    if site_id == tenant_id:
        raise SiteRefused(
            f"site {site_id!r} is tenant {tenant_id!r}'s default site (its own id, which events "
            "naming no site belong to) and cannot be removed; deprovision the tenant to remove "
            "all of its sites"
        )
    postgres.ensure_warehouse()
    with postgres.transaction() as conn:
        lock_tenant(conn, tenant_id)
        removed = conn.execute(
            "DELETE FROM platform.tenant_sites WHERE site_id = %s AND tenant_id = %s "
            "RETURNING added_at",
            (site_id, tenant_id),
        ).fetchone()
        if removed is None:
            raise SiteRefused(
                f"tenant {tenant_id!r} has no site {site_id!r}; its sites: "
                f"analytics-platform tenants sites list {tenant_id}"
            )
        record_audit(
            conn, tenant_id, "site_removed", actor, {"site_id": site_id, "added_at": removed[0]}
        )


def list_sites(postgres: PostgresResource, tenant_id: str) -> list[Site]:
    """The tenant's sites, the default one first, then by when they were added."""
    validate_tenant_id(tenant_id)
    postgres.ensure_warehouse()
    with postgres.connect() as conn:
        if not is_registered(conn, tenant_id):
            raise not_registered(tenant_id)
        rows = conn.execute(
            "SELECT site_id, tenant_id, added_at FROM platform.tenant_sites "
            "WHERE tenant_id = %s ORDER BY site_id <> tenant_id, added_at, site_id",
            (tenant_id,),
        ).fetchall()
    return [Site(*row) for row in rows]


def sites_by_tenant(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Every tenant's site ids (default first, then by when added), for listings."""
    rows = conn.execute(
        "SELECT tenant_id, site_id FROM platform.tenant_sites "
        "ORDER BY tenant_id, site_id <> tenant_id, added_at, site_id"
    ).fetchall()
    sites: dict[str, list[str]] = {}
    for tenant_id, site_id in rows:
        sites.setdefault(tenant_id, []).append(site_id)
    return sites
