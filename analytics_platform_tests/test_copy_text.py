"""COPY text formatting and the loader's fast path, checked against Postgres and to_canonical."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import orjson
import pytest

from analytics_platform.ingest.contract import (
    CONTRACT_COLUMNS,
    ContractViolation,
    to_canonical,
)
from analytics_platform.ingest.copy_text import copy_field, copy_line, escape
from analytics_platform.ingest.encode import RowEncoder
from analytics_platform.resources.postgres import PostgresResource

UTC = dt.timezone.utc
DAY_START = dt.datetime(2026, 11, 2, tzinfo=UTC)
DAY_END = DAY_START + dt.timedelta(days=1)

TRICKY = [
    "plain",
    "",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",  # the NULL marker's text, as a value
    "\\\\t",
    "trailing backslash\\",
    "caf\u00e9 \u2014 \U0001f600 \u4e2d\u6587",
    "\t\n\r\\ all of them",
]


def test_escape_leaves_plain_text_alone_and_escapes_the_four_specials():
    assert escape("plain") == "plain"
    assert escape("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"
    assert copy_field(None) == "\\N"
    assert copy_field(Decimal("49.90")) == "49.90"
    assert copy_field(dt.date(2026, 11, 2)) == "2026-11-02"


def test_tricky_strings_round_trip_through_postgres_copy(postgres: PostgresResource):
    rows = [(i, text) for i, text in enumerate(TRICKY)] + [(len(TRICKY), None)]
    block = "".join(copy_line(row) for row in rows).encode("utf-8")
    with postgres.transaction() as conn:
        conn.execute("CREATE TEMP TABLE copy_text_check (n integer, t text) ON COMMIT DROP")
        postgres.copy_blocks(conn, "copy_text_check", ["n", "t"], [block[:7], block[7:]])
        back = conn.execute("SELECT n, t FROM copy_text_check ORDER BY n").fetchall()
    assert back == rows


def _slow(record: dict) -> tuple[object, ...] | ContractViolation:
    try:
        return to_canonical(record, tenant="acme", window_start=DAY_START, window_end=DAY_END)
    except ContractViolation as err:
        return err


EVENT = {
    "eventId": "e-1",
    "tenantId": "acme",
    "eventType": "purchase",
    "timestamp": "2026-11-02T10:15:00.250Z",
    "visitorId": "v-1",
    "sessionId": "s-1",
    "url": "https://shop.example/checkout?x=1",
    "path": "/checkout",
    "attribution": {"utmParams": {"utm_source": "Google", "utm_medium": ""}},
    "revenue": 49.9,
    "currency": "EUR",
    "screen": "1440x900",
    "viewport": {"w": 1440, "h": [1, 2.5]},
}

VARIANTS = [
    {},
    {"path": "/tab\there", "referrer": "back\\slash", "title": "new\nline \u00e9"},
    {"timestamp": "2026-11-02T12:15:00+02:00"},
    {"timestamp": "2026-11-02 10:15:00"},
    {"timestamp": 1793613300},
    {"timestamp": "2026-11-03T00:00:00.000Z"},
    {"revenue": "12.50"},
    {"revenue": 123456789012345678901},
    {"revenue": True},
    {"visitorId": 42},
    {"visitorId": ""},
    {"tenantId": "globex"},
    {"tenantId": ""},
    {"eventType": "Page View"},
    {"currency": "eur"},
    {"properties": {"a": 1, "screen": "overridden"}},
    {"properties": '{"a": 1}'},
    {"properties": "[1]"},
    {"big": 123456789012345678901234567890},
    {"event_id": "both spellings"},
    {"url": "x" * 5000},
    {"attribution": "not an object", "utm_source": "direct"},
]


@pytest.mark.parametrize("change", VARIANTS, ids=[str(i) for i in range(len(VARIANTS))])
def test_the_fast_path_gives_to_canonicals_row_or_steps_aside(change):
    """RowEncoder.encode == copy_line(to_canonical(...)) as Postgres reads it, or None."""
    record = {**EVENT, **change}
    line = json.dumps(record).encode()
    fast = RowEncoder("acme", DAY_START, DAY_END).encode(
        orjson.loads(line) if b"123456789012345678901" not in line else json.loads(line),
        needs_escape=b"\\" in line,
        short=len(line) <= 4096,
    )
    slow = _slow(json.loads(line))
    if fast is None:
        return  # the slow path decides; nothing to compare
    assert not isinstance(slow, ContractViolation), slow
    fields = fast.split("\t")
    expected = copy_line(slow).rstrip("\n").split("\t")
    assert len(fields) == len(CONTRACT_COLUMNS)
    for column, got, want in zip(CONTRACT_COLUMNS, fields, expected, strict=True):
        if column == "occurred_at":
            got_time = dt.datetime.fromisoformat(got.replace("Z", "+00:00"))
            assert got_time == dt.datetime.fromisoformat(want), column
        elif column == "properties":
            assert json.loads(got.replace("\\\\", "\\")) == json.loads(want.replace("\\\\", "\\"))
        else:
            assert got == want, column


def test_the_fast_path_takes_the_trackers_plain_events():
    encoder = RowEncoder("acme", DAY_START, DAY_END)
    assert encoder.encode(dict(EVENT), needs_escape=False, short=True) is not None
    header = ["event_id", "event_type", "occurred_at", "visitor_id", "properties"]
    fields = ["e-1", "page_view", "2026-11-02T10:15:00Z", "v-1", '{"a":1}']
    row = encoder.encode_csv(header, fields, needs_escape=False, short=True)
    assert row is not None and row.endswith('\t{"a":1}')


def _slice_contents(postgres: PostgresResource, tenant: str) -> tuple[list, list]:
    with postgres.transaction() as conn:
        raw = conn.execute(
            "SELECT event_id, event_type, occurred_at, visitor_id, url, path, revenue, currency,"
            " properties, _source, _source_line FROM raw.file_events WHERE tenant_id = %s"
            " ORDER BY _source, _source_line",
            (tenant,),
        ).fetchall()
        quarantined = conn.execute(
            "SELECT source, source_line, reason, detail, raw_text FROM platform.quarantine"
            " WHERE tenant_id = %s ORDER BY source, source_line",
            (tenant,),
        ).fetchall()
    return raw, quarantined


def test_worker_processes_load_what_the_run_thread_loads(
    postgres: PostgresResource, landing_dir, new_tenant, monkeypatch
):
    """The slice loaded by worker processes equals the one loaded in the run's thread."""
    import analytics_platform.ingest.load as load
    from analytics_platform.demo.generator import generate_landing
    from analytics_platform.partitions import TenantDay
    from analytics_platform.resources.landing import LandingZoneResource

    day = dt.date(2026, 11, 2)
    tenant = new_tenant("workers")
    # Four days' files in one folder: every format (JSONL, CSV, gzipped), with defects.
    generated = generate_landing(
        landing_dir / "gen",
        [tenant],
        [day + dt.timedelta(days=i) for i in range(4)],
        events_per_day=300,
    )
    folder = landing_dir / tenant / day.isoformat()
    folder.mkdir(parents=True)
    for expected in generated.days.values():
        expected.file.rename(folder / f"{expected.file.parent.name}-{expected.file.name}")

    contents = []
    for processes in (1, 2, 1):
        if processes > 1:
            monkeypatch.setattr(load, "PARALLEL_MIN_BYTES", 0)
            monkeypatch.setattr(load, "BLOCK_BYTES", 4096)
        else:
            monkeypatch.undo()
        landing = LandingZoneResource(root=str(landing_dir), parse_processes=processes)
        with postgres.transaction() as conn:
            report = load.load_tenant_day(postgres, conn, landing, TenantDay(tenant, day), "r")
        fields = set().union(*(file.fields for file in report.files))
        contents.append(
            (*_slice_contents(postgres, tenant), report.rows_read, report.reasons, fields)
        )
    assert contents[0] == contents[1] == contents[2]
    raw, quarantined, rows_read, _, fields = contents[0]
    # The drift check's input: exactly the keys of the properties loaded.
    assert fields == {key for row in raw for key in row[8]} != set()
    assert len(raw) + len(quarantined) == rows_read > 1000  # not vacuous
    assert {reason for _, _, reason, _, _ in quarantined} >= {"invalid_json", "undecodable_bytes"}


def test_nul_characters_are_quarantined_not_fatal(
    postgres: PostgresResource, landing_dir, new_tenant
):
    """Postgres text and jsonb cannot hold U+0000: such rows are quarantined, the rest load."""
    from analytics_platform.ingest.load import load_tenant_day
    from analytics_platform.partitions import TenantDay
    from analytics_platform.resources.landing import LandingZoneResource

    day = dt.date(2026, 11, 2)
    tenant = new_tenant("nul")
    folder = landing_dir / tenant / day.isoformat()
    folder.mkdir(parents=True)
    event = {**EVENT, "tenantId": tenant}
    jsonl = [
        {**event, "eventId": "ok-json"},
        {**event, "eventId": "nul-in-a-column", "path": "/a\x00b"},
        {**event, "eventId": "nul-in-properties", "screen": "1\x00"},
        {**event, "eventId": "nul-in-a-key", "properties": {"k\x00": 1}},
    ]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in jsonl))
    header = "event_id,event_type,occurred_at,visitor_id,path,properties\n"
    rows = [
        'ok-csv,page_view,2026-11-02T10:00:00.000Z,v,/ok,"{""a"":1}"',
        'nul-raw,page_view,2026-11-02T10:00:00.000Z,v,/a\x00b,"{""a"":1}"',
        'nul-escaped,page_view,2026-11-02T10:00:00.000Z,v,/ok,"{""a"":""\\u0000""}"',
    ]
    (folder / "events.csv").write_text(header + "".join(r + "\n" for r in rows))
    landing = LandingZoneResource(root=str(landing_dir))
    with postgres.transaction() as conn:
        report = load_tenant_day(postgres, conn, landing, TenantDay(tenant, day), "r")
    raw, quarantined = _slice_contents(postgres, tenant)
    assert sorted(row[0] for row in raw) == ["ok-csv", "ok-json"]
    assert {(reason, detail.split(" holds")[0]) for _, _, reason, detail, _ in quarantined} == {
        ("wrong_type", "path"),
        ("wrong_type", "properties"),
    }
    assert len(quarantined) == report.rows_quarantined == 5
