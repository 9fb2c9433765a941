"""Property-based proof that the fast paths load what the reference path loads.

Hypothesis generates records (camelCase, snake_case and mixed spellings; missing,
empty and null values; wrong types, huge numbers, NUL characters, long strings;
odd timestamps; sites owned or not; tenant mismatches; properties as objects, text
or garbage) and CSV files of such rows (quoting, CRLF, backslashes, tabs, empty
fields). The loader's `Converter` (RowEncoder's JSON fast path, the Arrow CSV
column path, falling back line by line) must give, line for line, what the
reference alone gives: `to_canonical` -> `copy_line`, as Postgres would store the
values, or the same quarantine record (reason and detail).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analytics_platform.ingest.contract import (
    CONTRACT,
    CONTRACT_COLUMNS,
    Kind,
)
from analytics_platform.ingest.convert import Converted, Converter, FileJob, block_lines
from analytics_platform.ingest.load import RAW_COLUMNS

UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 2)
START = dt.datetime(2026, 11, 2, tzinfo=UTC) - dt.timedelta(hours=2)
END = dt.datetime(2026, 11, 3, tzinfo=UTC) + dt.timedelta(hours=2)
TENANT = "acme"
SITES = frozenset({TENANT, "shop-de"})
SOURCE = f"{TENANT}/{DAY}/events"
MAX_LINE_BYTES = 1 << 20
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values every field may take: plain, tricky for JSON, CSV or COPY, or breaking the contract.
TRICKY_TEXT = [
    "plain",
    "",
    " ",
    "tab\there",
    "new\nline",
    "carriage\rreturn",
    "back\\slash",
    "\\N",  # the NULL marker's text, as a value
    "trailing\\",
    'quo"te',
    "com,ma",
    "caf\u00e9 \u2014 \U0001f600 \u4e2d\u6587",
    "nul\x00",
    "x" * 5000,  # longer than a text column holds
]
ODD_VALUES = [None, 0, 42, -7, True, False, 1.5, 1e300, 123456789012345678901, [1], {"k": 1}]
TIMESTAMPS = [
    "2026-11-02T10:15:00.250Z",  # the tracker's form
    "2026-11-02T23:59:59.999Z",
    "2026-11-03T02:00:00.000Z",  # the window's end, excluded
    "2026-11-01T22:00:00.000Z",  # the window's start, included
    "2026-11-05T10:00:00.000Z",  # out of window
    "2026-11-02T10:15:00Z",
    "2026-11-02 10:15:00",  # naive means UTC
    "2026-11-02T12:15:00.000+02:00",
    "2026-11-02T10:15:00-05:30",
    " 2026-11-02T10:15:00Z ",
    "2026-02-30T10:00:00.000Z",  # impossible day
    "2026-11-02T24:00:00.000Z",  # impossible hour
    "not a time",
    "1793613300",  # epoch seconds as text
    "1793613300000",  # epoch milliseconds as text
    "-1",
    1793613300,
    1793613300000,
    1793613300.5,
    1e300,
    True,
]
EVENT_TYPES = ["page_view", "purchase", "sign_up2", "Page View", "x" * 70, "ümlaut"]
CURRENCIES = ["EUR", "USD", "eur", "EURO"]
REVENUES = ["12.50", "49.9", "abc", "1e400", "NaN", 49.9, 19, 10**20, "-0.0001"]
TENANTS = [TENANT, "globex", "ACME"]
SITE_VALUES = [TENANT, "shop-de", "othertenant", "Shop-DE", 5]
PROPERTIES = [
    {},
    {"a": 1, "screen": "overridden"},
    {"n": [1, 2.5, {"deep": None}], "s": 'tab\t\\ "q"'},
    '{"a": 1}',
    '{"a":"tab\\tand \\\\ and \\"q\\""}',
    "[1]",
    "{broken",
    "{}",
    {"k\x00": 1},
    {"v": "\x00"},
    '{"a":"\\u0000"}',
    {"f": 1e300},
    {"big": 123456789012345678901234567890},
]
ATTRIBUTIONS = [
    {"utmParams": {"utm_source": "Google", "utm_medium": "", "utm_campaign": "bf"}},
    {"utmParams": {"utm_source": 5}},
    {"utmParams": "not an object"},
    "not an object",
]
EXTRA_KEYS = ["screen", "plan_tier", "locale", "viewport"]

# JSON may also spell a lone surrogate (\ud800), which json.loads accepts and UTF-8 cannot hold.
text = st.sampled_from([*TRICKY_TEXT, "lone \ud800"]) | st.text(max_size=12)
odd = st.sampled_from(ODD_VALUES)


# What each kind of field holds in a record the contract accepts, tricky for COPY or not.
GOOD_TEXT = st.sampled_from(
    ["plain", "tab\there", "new\nline", "back\\slash", "\\N", 'quo"te', "com,ma", "caf\u00e9"]
) | st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
)
GOOD = {
    Kind.TENANT: st.just(TENANT),
    Kind.SITE: st.sampled_from([TENANT, "shop-de"]),
    Kind.TIMESTAMP: st.sampled_from(TIMESTAMPS[:4] + TIMESTAMPS[5:10] + TIMESTAMPS[13:15]),
    Kind.DECIMAL: st.sampled_from(["12.50", 49.9, 19, "-0.0001"]),
    Kind.JSON: st.sampled_from(PROPERTIES[:4] + PROPERTIES[7:8]),
}
GOOD_COLUMNS = {
    "event_id": st.from_regex(r"e-[0-9]{1,4}", fullmatch=True),
    "visitor_id": st.sampled_from(["v-1", "v-2", "caf\u00e9"]),
    "event_type": st.sampled_from(EVENT_TYPES[:3]),
    "currency": st.sampled_from(CURRENCIES[:2]),
}


def good_values(column: str, kind: Kind) -> st.SearchStrategy[object]:
    """A value the contract accepts for the column."""
    if column in GOOD_COLUMNS:
        return GOOD_COLUMNS[column]
    return GOOD.get(kind, GOOD_TEXT)


def values_for(column: str, kind: Kind) -> st.SearchStrategy[object]:
    """Any value: accepted, empty, or breaking the contract in one of many ways."""
    bad = {
        "event_type": st.sampled_from(EVENT_TYPES[3:]),
        "currency": st.sampled_from(CURRENCIES[2:]),
    }.get(column)
    bad_kind = {
        Kind.TENANT: st.sampled_from(TENANTS),
        Kind.SITE: st.sampled_from(SITE_VALUES),
        Kind.TIMESTAMP: st.sampled_from(TIMESTAMPS),
        Kind.DECIMAL: st.sampled_from(REVENUES),
        Kind.JSON: st.sampled_from(PROPERTIES),
    }.get(kind, text if bad is None else bad)
    return st.one_of(good_values(column, kind), bad_kind, st.sampled_from(["", None]), odd, text)


@st.composite
def records(draw: st.DrawFn) -> dict[str, object]:
    """A record the contract accepts (each field under one of its names, or absent), then
    up to three changes: a field dropped, emptied, given any value or a second spelling."""
    record: dict[str, object] = {}
    for field in CONTRACT:
        if field.required or draw(st.booleans()):
            record[draw(st.sampled_from(field.names))] = draw(good_values(field.column, field.kind))
    if draw(st.booleans()):
        record["attribution"] = draw(st.sampled_from(ATTRIBUTIONS))
    for key in draw(st.lists(st.sampled_from(EXTRA_KEYS), max_size=2, unique=True)):
        record[key] = draw(GOOD_TEXT | odd)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        field = draw(st.sampled_from(CONTRACT))
        name = draw(st.sampled_from(field.names))
        change = draw(st.sampled_from(["drop", "empty", "value", "value"]))
        if change == "drop":
            for spelling in field.names:
                record.pop(spelling, None)
        elif change == "empty":
            record[name] = draw(st.sampled_from(["", None]))
        else:
            record[name] = draw(values_for(field.column, field.kind))
    order = draw(st.permutations(list(record)))
    return {key: record[key] for key in order}


# Lines no serializer writes: broken JSON, not an object, not UTF-8, blank.
ODD_JSON_LINES = [
    b'{"eventId": "e9", "eventType": ',
    b"[1, 2]",
    b'"just a string"',
    b"\xff\xfe{}",
    b"",
    b"   ",
    b'{"eventId": "e", "eventType": "page_view", "timestamp": 1e400, "visitorId": "v"}',
    b'{"eventId": "e", "eventType": "page_view", "timestamp": "2026-11-02T10:00:00Z", '
    b'"visitorId": "v", "n": 123456789012345678901234567890}',
]


def job(*, csv_file: bool) -> FileJob:
    return FileJob(TENANT, DAY, START, END, SOURCE, "run-1", MAX_LINE_BYTES, csv_file, SITES)


def reference(job: FileJob, lines: list[tuple[int, bytes]], header: list[str] | None) -> Converted:
    """What the reference path alone makes of `lines`: the readers and `to_canonical`."""
    return Converter(job, header, fast=False).convert(lines)


TIMESTAMP_COLUMNS = frozenset(f.column for f in CONTRACT if f.kind is Kind.TIMESTAMP)
COPY_ESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def copy_value(field: str) -> str | None:
    """A COPY text field as Postgres reads it (our writers use only these four escapes)."""
    if field == "\\N":
        return None
    out, chars = [], iter(field)
    for char in chars:
        out.append(COPY_ESCAPES[next(chars)] if char == "\\" else char)
    return "".join(out)


def stored(row: str) -> tuple[object, ...]:
    """A COPY text row as the values Postgres stores (timestamptz, jsonb compared as such)."""
    fields = row.split("\t")
    assert len(fields) == len(RAW_COLUMNS), row
    values: list[object] = []
    for column, field in zip(RAW_COLUMNS, fields, strict=True):
        value = copy_value(field)
        if column in TIMESTAMP_COLUMNS and value is not None:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif column == "properties" and value is not None:
            value = json.dumps(json.loads(value), sort_keys=True)
        values.append(value)
    return tuple(values)


def copy_rows(text: bytes) -> list[str]:
    """COPY text's rows (ended by a newline only: str.splitlines splits at more)."""
    return text.decode("utf-8").split("\n")[:-1]


def outcome(done: Converted) -> tuple:
    rows = sorted(
        (stored(row) for row in copy_rows(done.text)),
        key=lambda values: values[RAW_COLUMNS.index("_source_line")],
    )
    return (
        rows,
        done.rows_read,
        done.rows_loaded,
        dict(done.reasons),
        sorted(done.quarantined, key=lambda r: r.source_line),
        done.fields,
    )


def json_lines(items: list[dict | bytes]) -> list[tuple[int, bytes]]:
    return [
        (number, item if isinstance(item, bytes) else json.dumps(item).encode("utf-8"))
        for number, item in enumerate(items, start=1)
    ]


@SETTINGS
@given(st.lists(records() | st.sampled_from(ODD_JSON_LINES), min_size=1, max_size=12))
@example([{"eventId": "e", "eventType": "page_view", "timestamp": "2026-11-02T10:00:00.000Z",
           "visitorId": "v", "siteId": "othertenant"}])  # fmt: skip
def test_the_json_fast_path_loads_what_the_reference_loads(items):
    lines = json_lines(items)
    assert outcome(Converter(job(csv_file=False)).convert(lines)) == outcome(
        reference(job(csv_file=False), lines, None)
    )


def test_plain_records_take_the_json_fast_path():
    """Not vacuous: what the tracker plainly sends is encoded without the reference path."""
    encoder = Converter(job(csv_file=False)).encoder
    plain = {
        "eventId": "e-1",
        "eventType": "page_view",
        "timestamp": "2026-11-02T10:15:00.250Z",
        "visitorId": "v-1",
        "siteId": "shop-de",
        "attribution": ATTRIBUTIONS[0],
        "screen": "1440x900",
    }
    assert encoder.encode(plain, needs_escape=False, short=True) is not None
    assert (
        encoder.encode({**plain, "siteId": "othertenant"}, needs_escape=False, short=True) is None
    )


CSV_NAMES = sorted({name for field in CONTRACT for name in field.names})


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[list[str], bytes]:
    """A header (the required columns mostly there, in snake_case) and rows of its fields."""
    required = [f.column for f in CONTRACT if f.required]  # each is one of its names
    if not draw(st.sampled_from([1, 1, 1, 0])):
        required = required[1:]
    optional = draw(st.lists(st.sampled_from(CSV_NAMES + EXTRA_KEYS), max_size=6, unique=True))
    header = list(dict.fromkeys(required + optional))
    header = draw(st.permutations(header))
    cell_text = st.sampled_from(TRICKY_TEXT[:-1]) | st.text(
        alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8
    )

    def cell(name: str) -> st.SearchStrategy[str]:
        field = next((f for f in CONTRACT if name in f.names), None)
        if field is None:
            return cell_text

        def as_cell(value: object) -> str:
            if value is None:
                return ""
            return json.dumps(value) if isinstance(value, dict | list) else str(value)

        good = good_values(field.column, field.kind).map(as_cell)
        anything = values_for(field.column, field.kind).map(as_cell)
        return st.one_of(good, good, good, good, good, good, anything, st.just(""), cell_text)

    rows = draw(st.lists(st.tuples(*(cell(name) for name in header)), min_size=1, max_size=40))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(header)
    for row in rows:
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
        line = io.StringIO()
        csv.writer(line, quoting=quoting, lineterminator="").writerow(row)
        out.write(line.getvalue() + draw(st.sampled_from(["\n", "\n", "\r\n"])))
    # A lone surrogate cannot be written as UTF-8 (a reader would see undecodable bytes).
    return list(header), out.getvalue().encode("utf-8", errors="replace")


def csv_block(data: bytes) -> tuple[list[str], bytes]:
    head, _, block = data.partition(b"\n")
    return next(csv.reader([head.decode()])), block


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_files())
def test_the_csv_column_path_loads_what_the_reference_loads(generated):
    header, data = generated
    _, block = csv_block(data)
    by_columns = Converter(job(csv_file=True), list(header)).convert_block(2, block)
    by_reference = reference(job(csv_file=True), list(block_lines(block, 2)), list(header))
    assert outcome(by_columns) == outcome(by_reference)


# Lines that send a CSV block, or themselves, to the line path (test_csv_columns.py).
HEADER = ["event_id", "tenant_id", "site_id", "event_type", "occurred_at", "visitor_id", "url"]
CSV_ODDITIES = [
    b"e-raw,acme,,page_view,2026-11-02T10:00:00.000Z,v,\xff\xfe",  # not UTF-8
    b"e-raw,acme,,page_view,2026-11-02T10:00:00.000Z,v,a\rb",  # a lone carriage return
    b"e-raw,acme,,page_view,2026-02-30T10:00:00.000Z,v,",  # an impossible day
    b'e-raw,acme,,page_view,2026-11-02T10:00:00.000Z,v,a"b',  # a quote mid-field
    b'e-raw,acme,,page_view,2026-11-02T10:00:00.000Z,v,"open',  # never closed
    b"e-raw,acme,,page_view,2026-11-02T10:00:00.000Z,v,a\tb",  # a tab
    b"e-raw,acme,,page_view,2026-11-02T10:00:00.000Z,v,nul\x00",
    b"e-raw,acme,othertenant,page_view,2026-11-02T10:00:00.000Z,v,",  # a foreign site
    b"e-raw,globex,shop-de,page_view,2026-11-02T10:00:00.000Z,v,",  # a foreign tenant
    b"e-raw,acme,shop-de,page_view,2026-11-02T10:00:00.000Z,v,back\\slash",
    b"e-raw,acme,,page_view,2026-11-02T10:00:00.000Z,v,,",  # a field over
    b"",
]
PLAIN_CSV = b"e-p,acme,,page_view,2026-11-02T10:00:00.000Z,v,https://x/"


@SETTINGS
@given(st.lists(st.sampled_from([PLAIN_CSV] * 4 + CSV_ODDITIES), min_size=1, max_size=30))
def test_csv_oddities_are_judged_as_the_reference_judges_them(lines):
    block = b"".join(line + b"\n" for line in lines)
    by_columns = Converter(job(csv_file=True), list(HEADER)).convert_block(2, block)
    by_reference = reference(job(csv_file=True), list(block_lines(block, 2)), list(HEADER))
    assert outcome(by_columns) == outcome(by_reference)


def test_plain_csv_rows_take_the_column_path():
    """Not vacuous: the generated plain rows are converted column by column."""
    block = PLAIN_CSV.replace(b",,", b",shop-de,") + b"\n" + (PLAIN_CSV + b"\r\n") * 50
    plain = Converter(job(csv_file=True), list(HEADER)).csv_columns().split(2, block)
    assert plain is not None and plain.rows == 51 and plain.rest == []
    sites = {
        stored(row)[CONTRACT_COLUMNS.index("site_id")] for row in plain.text.decode().splitlines()
    }
    assert sites == {"shop-de", TENANT}


def test_the_collectors_receive_time_takes_the_fast_paths():
    """Not vacuous for receivedAt: the collector's form stays fast, days late included."""
    encoder = Converter(job(csv_file=False)).encoder
    plain = {
        "eventId": "e-1",
        "eventType": "page_view",
        "timestamp": "2026-11-02T10:15:00.250Z",
        "visitorId": "v-1",
        "receivedAt": "2026-11-09T08:00:00.125Z",  # a week after its day: no window applies
    }
    row = encoder.encode(plain, needs_escape=False, short=True)
    assert row is not None and "2026-11-09T08:00:00.125Z" in row.split("\t")
    assert encoder.encode({**plain, "receivedAt": "2026-02-30T08:00:00.000Z"},
                          needs_escape=False, short=True) is None  # fmt: skip
    header = [*HEADER, "received_at"]
    block = b"".join(PLAIN_CSV + b"," + at + b"\n" for at in (b"2026-11-09T08:00:00.125Z", b""))
    split = Converter(job(csv_file=True), header).csv_columns().split(2, block)
    assert split is not None and split.rows == 2 and split.rest == []
    received = [stored(row)[CONTRACT_COLUMNS.index("received_at")] for row in
                split.text.decode().splitlines()]  # fmt: skip
    assert received == [dt.datetime(2026, 11, 9, 8, 0, 0, 125000, tzinfo=UTC), None]
