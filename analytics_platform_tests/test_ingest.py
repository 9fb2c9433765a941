"""The event contract and the file readers, on small inputs with known outcomes."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

from analytics_platform.ingest.contract import (
    CONTRACT_COLUMNS,
    ContractViolation,
    Reason,
    parse_timestamp,
    to_canonical,
)
from analytics_platform.ingest.files import is_landing_file, read_landing_file

UTC = dt.timezone.utc
DAY_START = dt.datetime(2026, 11, 2, tzinfo=UTC)
DAY_END = DAY_START + dt.timedelta(days=1)


def canonical(record: object, tenant: str = "acme") -> dict[str, object]:
    values = to_canonical(record, tenant=tenant, window_start=DAY_START, window_end=DAY_END)
    return dict(zip(CONTRACT_COLUMNS, values, strict=True))


def violation(record: object, tenant: str = "acme") -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        canonical(record, tenant)
    return caught.value


TRACKER_EVENT = {
    "eventId": "e-1",
    "eventType": "purchase",
    "sessionId": "s-1",
    "visitorId": "v-1",
    "userId": "u-1",
    "timestamp": "2026-11-02T10:15:00.250Z",
    "url": "https://shop.example/checkout?x=1",
    "path": "/checkout",
    "referrer": "https://www.google.com/",
    "attribution": {
        "utmParams": {"utm_source": "Google", "utm_medium": "cpc", "utm_campaign": "bf"}
    },
    "experiment": "pricing_v2",
    "variant": "treatment",
    "revenue": 49.9,
    "currency": "EUR",
    "screen": "1440x900",
}


def test_tracker_camel_case_maps_to_the_canonical_columns():
    row = canonical(TRACKER_EVENT)
    assert row["event_id"] == "e-1"
    assert row["tenant_id"] == "acme"
    assert row["session_hint"] == "s-1"
    assert row["occurred_at"] == dt.datetime(2026, 11, 2, 10, 15, 0, 250000, tzinfo=UTC)
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == ("Google", "cpc", "bf")
    assert (row["experiment_id"], row["variant"]) == ("pricing_v2", "treatment")
    assert str(row["revenue"]) == "49.9"
    assert json.loads(row["properties"]) == {"screen": "1440x900"}


def test_snake_case_and_camel_case_give_the_same_row():
    snake = {
        "event_id": "e-1",
        "event_type": "purchase",
        "session_id": "s-1",
        "visitor_id": "v-1",
        "user_id": "u-1",
        "occurred_at": "2026-11-02T10:15:00.250Z",
        "url": "https://shop.example/checkout?x=1",
        "path": "/checkout",
        "referrer": "https://www.google.com/",
        "utm_source": "Google",
        "utm_medium": "cpc",
        "utm_campaign": "bf",
        "experiment_id": "pricing_v2",
        "variant": "treatment",
        "revenue": "49.9",
        "currency": "EUR",
        "screen": "1440x900",
    }
    assert canonical(snake) == canonical(TRACKER_EVENT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-02T10:00:00Z", dt.datetime(2026, 11, 2, 10, tzinfo=UTC)),
        ("2026-11-02T12:00:00+02:00", dt.datetime(2026, 11, 2, 10, tzinfo=UTC)),
        ("2026-11-02 10:00:00", dt.datetime(2026, 11, 2, 10, tzinfo=UTC)),  # naive means UTC
        (1793606400, dt.datetime(2026, 11, 2, 8, tzinfo=UTC)),  # epoch seconds
        (1793606400000, dt.datetime(2026, 11, 2, 8, tzinfo=UTC)),  # epoch milliseconds
        ("1793606400000", dt.datetime(2026, 11, 2, 8, tzinfo=UTC)),
    ],
)
def test_timestamps_in_every_accepted_shape(value, expected):
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"visitorId": None}, Reason.MISSING_FIELD),
        ({"eventId": ""}, Reason.MISSING_FIELD),
        ({"timestamp": "yesterday-ish"}, Reason.BAD_TIMESTAMP),
        ({"timestamp": True}, Reason.BAD_TIMESTAMP),
        ({"timestamp": "2026-11-03T00:00:00Z"}, Reason.OUT_OF_WINDOW),  # end is exclusive
        ({"timestamp": "2026-11-01T23:59:59Z"}, Reason.OUT_OF_WINDOW),
        ({"tenantId": "globex"}, Reason.TENANT_MISMATCH),
        ({"revenue": "lots"}, Reason.WRONG_TYPE),
        ({"visitorId": {"id": 1}}, Reason.WRONG_TYPE),
        ({"eventType": "Page View"}, Reason.WRONG_TYPE),
        ({"currency": "euro"}, Reason.WRONG_TYPE),
        ({"visitorId": "v\x00"}, Reason.WRONG_TYPE),  # Postgres text cannot hold NUL
        ({"screen": {"k\x00": 1}}, Reason.WRONG_TYPE),  # nor can jsonb
        ({"visitorId": "v\ud800"}, Reason.WRONG_TYPE),  # json.loads reads a lone surrogate
        ({"screen": ["\udfff"]}, Reason.WRONG_TYPE),  # which UTF-8 cannot hold
        ({"siteId": "othertenant"}, Reason.TENANT_MISMATCH),  # not one of acme's sites
        ({"site_id": 42}, Reason.TENANT_MISMATCH),
    ],
)
def test_contract_violations_carry_a_reason(change, reason):
    assert violation({**TRACKER_EVENT, **change}).reason is reason


def test_a_json_value_that_is_not_an_object_is_refused():
    assert violation(["not", "an", "object"]).reason is Reason.WRONG_TYPE


def test_tolerance_widens_the_window():
    late = {**TRACKER_EVENT, "timestamp": "2026-11-03T00:05:00Z"}
    values = to_canonical(
        late, tenant="acme", window_start=DAY_START, window_end=DAY_END + dt.timedelta(minutes=10)
    )
    assert values[CONTRACT_COLUMNS.index("event_id")] == "e-1"


def lines_of(path: Path, max_line_bytes: int = 1_048_576) -> list:
    return list(read_landing_file(path, max_line_bytes=max_line_bytes))


def test_jsonl_lines_keep_their_physical_line_numbers(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a": 1}\n\n   \n{"broken"\n{"b": 2}\n')
    lines = lines_of(path)
    assert [(line.line_number, line.record) for line in lines] == [
        (1, {"a": 1}),
        (4, None),
        (5, {"b": 2}),
    ]
    assert lines[1].violation.reason is Reason.INVALID_JSON
    assert lines[1].text == '{"broken"'


def test_gzip_jsonl_reads_like_plain(tmp_path: Path):
    payload = b'{"a": 1}\r\n{"b": 2}\r\n'
    (tmp_path / "plain.jsonl").write_bytes(payload)
    with gzip.open(tmp_path / "packed.jsonl.gz", "wb") as out:
        out.write(payload)
    plain, packed = lines_of(tmp_path / "plain.jsonl"), lines_of(tmp_path / "packed.jsonl.gz")
    assert (
        [line.record for line in packed] == [line.record for line in plain] == [{"a": 1}, {"b": 2}]
    )


def test_csv_rows_become_records_and_bad_rows_are_flagged(tmp_path: Path):
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as out:
        out.write("\ufeffevent_id,event_type,revenue\n")
        out.write('e1,page_view,\ne2,purchase,"1,5"\ne3,only_two\n')
    lines = lines_of(path)
    assert [line.record for line in lines] == [
        {"event_id": "e1", "event_type": "page_view"},  # empty cells are absent, not ""
        {"event_id": "e2", "event_type": "purchase", "revenue": "1,5"},
        None,
    ]
    assert [line.line_number for line in lines] == [2, 3, 4]
    assert lines[2].violation.reason is Reason.WRONG_TYPE


def test_undecodable_and_oversized_lines_are_flagged_with_their_text(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"name": "caf\xe9"}\n' + b'{"pad": "' + b"x" * 200 + b'"}\n{"ok": 1}\n')
    lines = lines_of(path, max_line_bytes=100)
    assert [line.violation.reason if line.violation else None for line in lines] == [
        Reason.UNDECODABLE_BYTES,
        Reason.OVERSIZED_LINE,
        None,
    ]
    assert lines[0].text == '{"name": "caf\\xe9"}'  # the bad byte stays visible
    assert len(lines[1].text) > 200


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("events.jsonl", True),
        ("events.ndjson.gz", True),
        ("events.CSV", True),
        ("events.jsonl.tmp", False),  # still being written
        (".events.jsonl", False),
        ("notes.txt", False),
    ],
)
def test_which_files_count_as_landed(tmp_path: Path, name: str, expected: bool):
    path = tmp_path / name
    path.write_text("")
    assert is_landing_file(path) is expected


def test_the_collectors_receive_time_is_a_contract_column_bound_to_no_window():
    """receivedAt (or received_at) fills received_at, never properties; an event may be
    received days after its day, so no window applies, but a bad value is refused."""
    late = "2026-11-09T08:00:00.125Z"
    row = canonical({**TRACKER_EVENT, "receivedAt": late})
    assert row["received_at"] == dt.datetime(2026, 11, 9, 8, 0, 0, 125000, tzinfo=UTC)
    assert json.loads(row["properties"]) == {"screen": "1440x900"}
    assert canonical({**TRACKER_EVENT, "received_at": late})["received_at"] == row["received_at"]
    assert canonical(TRACKER_EVENT)["received_at"] is None
    for bad in ("yesterday", "2026-02-30T08:00:00.000Z", True, {"at": late}):
        refused = violation({**TRACKER_EVENT, "receivedAt": bad})
        assert refused.reason is Reason.BAD_TIMESTAMP
        assert refused.detail.startswith("received_at ")
    # The event's own time decides first, as the contract orders its checks.
    both = violation({**TRACKER_EVENT, "timestamp": "nope", "receivedAt": "nope"})
    assert both.detail.startswith("timestamp 'nope'")
