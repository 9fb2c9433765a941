"""The sites a tenant owns (`platform.tenant_sites`), which its events may name.

A tracker names the site that sent an event in `siteId`/`site_id`; the event
contract quarantines an event naming a site its folder's (or API's) tenant does
not own, as `tenant_mismatch`. Every tenant owns its own id as its default
site, and an event naming no site belongs to it.
"""

from __future__ import annotations

import psycopg

from analytics_platform.resources.postgres import PostgresResource


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
