"""CSV blocks read column by column (Arrow) give what reading them line by line gives."""

from __future__ import annotations

import csv
import datetime as dt
import gc
import io
import random

import pytest

from analytics_platform.ingest.convert import Converted, Converter, FileJob, block_lines

UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 2)
START = dt.datetime(2026, 11, 2, tzinfo=UTC) - dt.timedelta(hours=2)
END = dt.datetime(2026, 11, 3, tzinfo=UTC) + dt.timedelta(hours=2)
HEADER = [
    "event_id",
    "tenant_id",
    "event_type",
    "occurred_at",
    "visitor_id",
    "url",
    "revenue",
    "currency",
    "properties",
    "plan_tier",  # outside the contract: kept in properties
]
GOOD = {
    "event_id": "e",
    "tenant_id": "acme",
    "event_type": "page_view",
    "occurred_at": "2026-11-02T10:15:00.250Z",
    "visitor_id": "v-1",
    "url": "https://shop.example/?q=1",
    "revenue": "",
    "currency": "",
    "properties": '{"screen":"1440x900","n":[1,2.5,{"deep":null}]}',
    "plan_tier": "pro",
}
# Values a field may take: plain, tricky for CSV or COPY, or breaking the contract.
CHANGES = {
    "event_id": ["", 'quo"te', "com,ma", "back\\slash", "tab\there", "caf\u00e9 \U0001f600"],
    "tenant_id": ["", "globex", "ACME"],
    "event_type": ["purchase", "Page View", "", "x" * 70, "sign_up2"],
    "occurred_at": [
        "2026-11-02T23:59:59.999Z",
        "2026-11-03T02:00:00.000Z",  # the window's end, excluded
        "2026-11-01T22:00:00.000Z",  # the window's start, included
        "2026-11-05T10:00:00.000Z",
        "2026-11-02T10:15:00Z",
        "2026-11-02 10:15:00",
        "2026-11-02T12:15:00.000+02:00",
        "1793613300",
        "2026-11-02T24:00:00.000Z",
        "not a time",
    ],
    "visitor_id": ["", " ", "\\N"],
    "url": ["", "x" * 5000, 'say "hi"'],
    "revenue": ["12.50", "abc", "1e400"],
    "currency": ["EUR", "eur"],
    "properties": [
        "",
        "{}",
        "[1]",
        "{broken",
        '{"a":"tab\\tand \\\\ and \\"q\\""}',
        '{"big":123456789012345678901234567890}',
        '{"f":1e300}',
        '{"plan_tier":"overridden"}',
    ],
    "plan_tier": ["", "free", "back\\slash"],
}


def _row(rng: random.Random, number: int) -> dict[str, str]:
    row = {**GOOD, "event_id": f"e{number}"}
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        column = rng.choice(list(CHANGES))
        row[column] = rng.choice(CHANGES[column])
    return row


def _csv_line(rng: random.Random, row: dict[str, str]) -> bytes:
    out = io.StringIO()
    quoting = rng.choice([csv.QUOTE_MINIMAL, csv.QUOTE_MINIMAL, csv.QUOTE_ALL])
    csv.writer(out, quoting=quoting, lineterminator="").writerow([row[h] for h in HEADER])
    return out.getvalue().encode("utf-8")


# Plain lines, written by hand rather than by the csv module.
PLAIN_LINES = [
    b"e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,,,,,",
    b'e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,"a""b",,,,',  # a doubled quote
    b'e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,"",,,,',  # a quoted empty value
]
# Lines the column path leaves, one by one, to the line path.
ODD_LINES = [
    b"",  # blank
    b"   ",
    b'e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,a"b,,,,',  # a quote mid-field
    b'e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,"ab"c,,,,',  # text after a quote
    b'e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,"open,,,,',  # never closed
    b"e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,,,,",  # a field short
    b"e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,,,,,,",  # a field over
    b"e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,nul\x00,,,,",
    b"e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,a\tb,,,,",  # a tab: escaped line by line
]
# Lines that send their whole block to the line path.
BLOCK_ODDITIES = [
    b"e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,\xff\xfe,,,,",  # not UTF-8
    b"e-raw,acme,page_view,2026-11-02T10:00:00.000Z,v,a\rb,,,,",  # a lone carriage return
    b"e-raw,acme,page_view,2026-02-30T10:00:00.000Z,v,,,,,",  # an impossible day
]


def _block(seed: int, rows: int, raw_lines: list[bytes]) -> bytes:
    rng = random.Random(seed)
    lines = [_csv_line(rng, _row(rng, n)) for n in range(rows)]
    for raw in raw_lines:
        lines.insert(rng.randrange(len(lines)), raw)
    return b"".join(line + rng.choice([b"\n", b"\n", b"\r\n"]) for line in lines)


def _converter() -> Converter:
    job = FileJob("acme", DAY, START, END, "acme/2026-11-02/e.csv", "run-1", 1 << 20, csv=True)
    return Converter(job, list(HEADER))


def _comparable(done: Converted) -> tuple:
    return (
        sorted(done.text.decode("utf-8").splitlines()),
        done.rows_read,
        done.rows_loaded,
        dict(done.reasons),
        sorted(done.quarantined, key=repr),
        done.fields,
    )


@pytest.mark.parametrize(
    ("seed", "raw_lines"), [(1, []), (2, PLAIN_LINES + ODD_LINES)], ids=["generated", "odd-lines"]
)
def test_column_path_equals_the_line_path(seed, raw_lines):
    block = _block(seed, 1500, raw_lines)
    converter = _converter()
    by_columns = converter.convert_block(40, block)
    by_lines = _converter().convert(block_lines(block, 40))
    assert _comparable(by_columns) == _comparable(by_lines)
    # Not vacuous: both kinds of outcome, and most rows read column by column.
    assert by_lines.rows_loaded > 500 and len(by_lines.quarantined) > 100
    plain = converter.csv_columns().split(40, block)
    assert plain is not None and plain.rows > 700
    # The odd lines are all left to the line path, under their own line numbers.
    left = {number for number, _ in plain.rest}
    numbered = list(block_lines(block, 40))
    for raw in raw_lines:
        numbers = {n for n, text in numbered if text.rstrip(b"\r") == raw}
        assert numbers, raw
        assert (numbers <= left) if raw in ODD_LINES else not (numbers & left), raw


@pytest.mark.parametrize("oddity", BLOCK_ODDITIES, ids=["not-utf8", "carriage-return", "feb-30"])
def test_a_block_oddity_hands_the_whole_block_to_the_line_path(oddity):
    converter = _converter()
    block = _block(6, 200, [oddity])
    assert converter.csv_columns().split(1, block) is None
    by_lines = _converter().convert(block_lines(block, 1))
    assert _comparable(converter.convert_block(1, block)) == _comparable(by_lines)
    assert any(record.raw_text.startswith("e-raw") for record in by_lines.quarantined)


def test_a_header_without_the_required_columns_is_read_line_by_line():
    job = FileJob("acme", DAY, START, END, "s", "r", 1 << 20, csv=True)
    assert Converter(job, ["event_id", "event_type", "occurred_at"]).csv_columns() is None
    assert Converter(job, ["event_id", "event_id", *HEADER[1:]]).csv_columns() is None


def test_a_carriage_return_inside_a_row_is_quarantined_not_fatal():
    line = b"e-1,acme,page_view,2026-11-02T10:00:00.000Z,v,a\rb,,,,"
    done = _converter().convert([(7, line)])
    (record,) = done.quarantined
    assert (record.source_line, record.reason, record.raw_text) == (7, "wrong_type", line.decode())
    assert record.detail.startswith("not a CSV row")


def test_quarantined_rows_leave_no_reference_cycles():
    """A caught violation's traceback would hold the converting frame, and its block of rows,
    until the next full collection: a worker's memory crept by about a block per defect."""
    job = FileJob("acme", DAY, START, END, "s", "r", 1 << 20, csv=False)
    converter = Converter(job)
    broken = b'"eventType": "x", "timestamp": "2026-11-02T10:00:00Z", "visitorId": "v"'
    lines = [
        (1, b'{"eventId": "e-1"}'),
        (2, b'{"eventId": "e-2", ' + broken + b', "properties": "{"}'),
    ]
    gc.collect()
    gc.disable()
    try:
        done = converter.convert(lines)
        assert set(done.reasons) == {"missing_field", "wrong_type"}
        assert gc.collect() == 0
    finally:
        gc.enable()
