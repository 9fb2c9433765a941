"""Sites in the event contract: an event naming a site its tenant does not own is quarantined
`tenant_mismatch`, from landing files (JSON lines and CSV, every path) and from the API."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from dagster import materialize

from analytics_platform.assets.raw import raw_file_events
from analytics_platform.partitions import TenantDay
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.tenants.registry import register_tenant
from analytics_platform_tests import test_api
from analytics_platform_tests.events import day_file, tracker_event, write_lines
from analytics_platform_tests.test_api import load, metadata, quarantine_rows

# The fake API server and its tenant, shared with test_api.py.
event_api_server = test_api.event_api_server
api_tenant = test_api.api_tenant

DAY = dt.date(2026, 11, 2)


def add_site(postgres: PostgresResource, tenant: str, site: str) -> None:
    """What `tenants sites add` records (another change builds that command)."""
    with postgres.transaction() as conn:
        conn.execute(
            "INSERT INTO platform.tenant_sites (site_id, tenant_id) VALUES (%s, %s)", (site, tenant)
        )


def load_files(tenant: str, resources: dict, instance) -> dict:
    result = materialize(
        [raw_file_events],
        partition_key=TenantDay(tenant, DAY).partition_key,
        resources={"postgres": resources["postgres"], "landing": resources["landing"]},
        instance=instance,
    )
    materialization = result.asset_materializations_for_node("raw_file_events")[0]
    return {name: value.value for name, value in materialization.metadata.items()}


def slice_of(postgres: PostgresResource, tenant: str) -> tuple[list, list]:
    with postgres.connect() as conn:
        raw = conn.execute(
            "SELECT _source, _source_line, event_id, site_id FROM raw.file_events "
            "WHERE tenant_id = %s ORDER BY _source, _source_line",
            (tenant,),
        ).fetchall()
        quarantined = conn.execute(
            "SELECT tenant_id, partition_date, source, source_line, reason, detail, raw_text "
            "FROM platform.quarantine WHERE tenant_id = %s AND layer = 'raw_file_events' "
            "ORDER BY source, source_line",
            (tenant,),
        ).fetchall()
    return raw, quarantined


def test_events_naming_a_site_of_another_tenant_are_quarantined(
    new_tenant, postgres, resources, landing_dir, instance
):
    acme, other = new_tenant("acme"), new_tenant("othertenant")
    for tenant in (acme, other):
        register_tenant(postgres, tenant, actor="test")
    instance.add_dynamic_partitions("tenants", [acme])
    shop_de = f"{acme}-shop-de"  # a site id of this test only: site ids are global
    at = f"{DAY}T10:00:00.000Z"
    # JSON lines: the fast path's shape, each site spelling, none named, a foreign site.
    write_lines(
        day_file(landing_dir, acme, DAY, "events.jsonl"),
        [
            tracker_event("j1", "v1", at),  # no site: the tenant's default site
            tracker_event("j2", "v1", at, siteId=acme),
            tracker_event("j3", "v1", at, siteId=other),  # another tenant's site
            tracker_event("j4", "v1", at, site_id=shop_de),  # not yet acme's
            tracker_event("j5", "v1", at, siteId=""),  # empty: none named
        ],
    )
    # CSV: 300 plain rows (the column path), then a foreign one and a default one.
    csv_rows = [f"c{i},page_view,{at},v{i},{acme if i % 2 else ''}" for i in range(300)]
    csv_rows[150] = f"c150,page_view,{at},v150,{other}"
    day_file(landing_dir, acme, DAY, "events.csv").write_text(
        "event_id,event_type,occurred_at,visitor_id,site_id\n" + "\n".join(csv_rows) + "\n"
    )

    meta = load_files(acme, resources, instance)

    raw, quarantined = slice_of(postgres, acme)
    source = f"{acme}/{DAY}/"
    assert [(s, line, reason) for _, _, s, line, reason, _, _ in quarantined] == [
        (source + "events.csv", 152, "tenant_mismatch"),  # line 1 is the header
        (source + "events.jsonl", 3, "tenant_mismatch"),
        (source + "events.jsonl", 4, "tenant_mismatch"),
    ]
    for tenant, day, _, _, _, detail, _ in quarantined:
        assert (tenant, day) == (acme, DAY)
        assert acme in detail
    assert repr(other) in quarantined[0][5] and repr(other) in quarantined[1][5]
    assert f"'{shop_de}'" in quarantined[2][5]
    assert json.loads(quarantined[1][6])["siteId"] == other  # the original text is kept
    assert (meta["rows_read"], meta["rows_loaded"], meta["rows_quarantined"]) == (305, 302, 3)
    assert meta["rows_read"] == meta["rows_loaded"] + meta["rows_quarantined"]
    # Every row loaded carries its site: the one it named, or the tenant's default.
    assert {site for *_, site in raw} == {acme}
    assert "c150" not in {event for _, _, event, _ in raw}

    # Once acme owns shop-de, its event loads under that site; the foreign ones stay out.
    add_site(postgres, acme, shop_de)
    meta = load_files(acme, resources, instance)
    raw, quarantined = slice_of(postgres, acme)
    assert (meta["rows_loaded"], meta["rows_quarantined"]) == (303, 2)
    assert ("j4", shop_de) in {(event, site) for _, _, event, site in raw}
    assert {line for *_, line, _, _, _ in quarantined} == {3, 152}


def test_the_api_quarantines_events_from_a_site_its_tenant_does_not_own(
    api_tenant, event_api_server, postgres, resources, instance, new_tenant
):
    other = new_tenant("othertenant")
    register_tenant(postgres, other, actor="test")
    app_ios = f"{api_tenant}-app-ios"  # a site id of this test only: site ids are global
    at = f"{DAY}T10:00:00Z"
    event_api_server.events[DAY.isoformat()] = [
        tracker_event("a1", "v1", at),
        tracker_event("a2", "v1", at, siteId=other),
        tracker_event("a3", "v1", at, siteId=app_ios),
        tracker_event("a4", "v1", at, site_id=api_tenant),
    ]

    meta = metadata(load(api_tenant, resources, instance))

    assert (meta["rows_read"], meta["rows_loaded"], meta["rows_quarantined"]) == (4, 2, 2)
    rows = quarantine_rows(postgres, api_tenant)
    assert [(line, reason) for _, line, reason, _, _ in rows] == [
        (2, "tenant_mismatch"),  # pages of two: a2 is the second of the first page
        (1, "tenant_mismatch"),
    ]
    assert repr(other) in rows[0][3] and api_tenant in rows[0][3]
    with postgres.connect() as conn:
        loaded = conn.execute(
            "SELECT event_id, site_id FROM raw.api_events WHERE tenant_id = %s ORDER BY 1",
            (api_tenant,),
        ).fetchall()
    assert loaded == [("a1", api_tenant), ("a4", api_tenant)]

    add_site(postgres, api_tenant, app_ios)
    meta = metadata(load(api_tenant, resources, instance, full_refresh=True))
    assert (meta["rows_loaded"], meta["rows_quarantined"]) == (3, 1)


def test_replaying_the_quarantine_loads_an_event_once_its_site_is_added(
    new_tenant, postgres, resources, landing_dir, instance
):
    from analytics_platform.ingest.reprocess import replay_quarantine

    tenant = new_tenant("acme")
    site = f"app-{uuid.uuid4().hex[:8]}"  # a site id belongs to one tenant in the database
    register_tenant(postgres, tenant, actor="test")
    instance.add_dynamic_partitions("tenants", [tenant])
    at = f"{DAY}T10:00:00.000Z"
    write_lines(
        day_file(landing_dir, tenant, DAY),
        [tracker_event("r1", "v1", at, siteId=site), tracker_event("r2", "v1", at)],
    )
    load_files(tenant, resources, instance)
    landing = resources["landing"]

    still = replay_quarantine(postgres, landing, tenant, "replay-1")
    assert (still.examined, still.moved, dict(still.still_failing)) == (
        1,
        0,
        {"tenant_mismatch": 1},
    )
    add_site(postgres, tenant, site)
    moved = replay_quarantine(postgres, landing, tenant, "replay-2")
    assert (moved.examined, moved.moved) == (1, 1)
    raw, _ = slice_of(postgres, tenant)
    assert {(event, site) for _, _, event, site in raw} == {("r1", site), ("r2", tenant)}
