"""A fast path from a record to its COPY text row, for records that plainly meet the contract.

`RowEncoder.encode` returns exactly what `copy_line(to_canonical(record))` would
give (as stored values: jsonb and timestamptz are compared as Postgres stores
them), or None when the record is anything but plain: then the caller takes the
slow path, `to_canonical`, which decides and explains. The fast path never
refuses a record itself, so quarantine reasons and details all come from
`to_canonical`.

Most of the cost of `to_canonical` is generic lookups repeated per record; here
the lookups are planned once per key layout (a tracker sends the same keys in
the same order, record after record) and the checks are the cheapest that are
equivalent for plain values.
"""

from __future__ import annotations

import datetime as dt
from operator import itemgetter

import orjson

from analytics_platform.ingest.contract import (
    CONTRACT,
    KNOWN_KEYS,
    MAX_TEXT_CHARS,
    ContractViolation,
    Kind,
    parse_decimal,
    parse_timestamp,
)
from analytics_platform.ingest.copy_text import NULL, escape, escape_backslashes

# orjson reads an integer literal beyond 64 bits as a float, the json module as an
# int: a float this large in properties may be such a literal, so the record takes
# the slow path (the contract's other columns refuse such values anyway).
HUGE_FLOAT = 2.0**63
UTC = dt.timezone.utc

# The plan of a row, derived from CONTRACT: every column but the JSON one (the last)
# is picked by position; each kind's rule is applied below, or the row goes slow.
if CONTRACT[-1].kind is not Kind.JSON or sum(f.kind is Kind.JSON for f in CONTRACT) != 1:
    raise RuntimeError("encode.py writes the one JSON column last: change it with the contract")
PICKED = CONTRACT[:-1]
PICKED_COLUMNS = tuple(f.column for f in PICKED)
JSON_COLUMN = CONTRACT[-1].column
_AT = {f.column: i for i, f in enumerate(PICKED)}
TENANT_AT = next(i for i, f in enumerate(PICKED) if f.kind is Kind.TENANT)
SITE_AT = next(i for i, f in enumerate(PICKED) if f.kind is Kind.SITE)
(OCCURRED_AT,) = (i for i, f in enumerate(PICKED) if f.kind is Kind.TIMESTAMP and f.windowed)
# Timestamps outside any window (the collector's receive time): plain in the tracker's form.
UNWINDOWED_TIMES = tuple(
    i for i, f in enumerate(PICKED) if f.kind is Kind.TIMESTAMP and not f.windowed
)
DECIMALS = tuple((i, f.column) for i, f in enumerate(PICKED) if f.kind is Kind.DECIMAL)
PATTERNS = tuple((i, f.pattern) for i, f in enumerate(PICKED) if f.pattern is not None)
REQUIRED_AT = tuple(i for i, f in enumerate(PICKED) if f.required)
# Columns with a fallback inside nested objects (utm_* in attribution.utmParams).
NESTED: dict[tuple[str, ...], tuple[tuple[int, str], ...]] = {}
for _i, _f in enumerate(PICKED):
    if _f.nested:
        NESTED[_f.nested] = (*NESTED.get(_f.nested, ()), (_i, _f.column))
NESTED_ROOTS = frozenset(path[0] for path in NESTED)
_NESTED_ITEMS = tuple(NESTED.items())
_PLAN_CACHE_SIZE = 256
_KNOWN_VALUES = 1024


_fromisoformat = dt.datetime.fromisoformat


def _has_huge_float(value: dict | list) -> bool:
    """Whether a float of at least 2**63 in magnitude is anywhere inside `value`."""
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is float:
            if not -HUGE_FLOAT < item < HUGE_FLOAT:
                return True
        elif (kind is dict or kind is list) and _has_huge_float(item):
            return True
    return False


class Plan:
    """Where each column's value is in records with one key layout (or one CSV header)."""

    __slots__ = ("extra", "keys", "nested", "properties")

    def __init__(self, layout: tuple[str, ...]):
        present = set(layout)
        keys: list[str | None] = []
        for f in PICKED:
            spellings = [s for s in f.names if s in present]
            if len(spellings) > 1:
                raise _NoPlan  # which spelling wins depends on values: the slow path decides
            keys.append(spellings[0] if spellings else None)
        self.keys = tuple(keys)
        self.extra = tuple(k for k in layout if k not in KNOWN_KEYS)
        self.nested = bool(NESTED_ROOTS & present)
        self.properties = JSON_COLUMN in present

    def key(self, column: str) -> str | None:
        """Where `column`'s value is, or None when no key of the layout names it."""
        return self.keys[_AT[column]]


class _NoPlan(Exception):
    pass


class RowEncoder:
    """COPY text rows (the contract's columns) for one tenant-day's window."""

    def __init__(
        self,
        tenant: str,
        window_start: dt.datetime,
        window_end: dt.datetime,
        sites: frozenset[str] | None = None,
    ):
        self.tenant = tenant
        self.window_start = window_start
        self.window_end = window_end
        self.sites = sites or frozenset({tenant})
        self._plans: dict[tuple[str, ...], Plan | None] = {}
        # (position, the pattern's fullmatch, the values that matched it so far)
        self._patterns = [(at, pattern.fullmatch, set()) for at, pattern in PATTERNS]
        self._header: list[str] | None = None
        self.fields: set[str] = set()  # keys of the properties of the rows encoded
        self._csv: tuple[itemgetter, tuple[tuple[str, int], ...], int] | None = None

    def plan(self, layout: tuple[str, ...]) -> Plan | None:
        try:
            return self._plans[layout]
        except KeyError:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            try:
                plan = Plan(layout)
            except _NoPlan:
                plan = None
            self._plans[layout] = plan
            return plan

    def encode(self, record: object, *, needs_escape: bool, short: bool) -> str | None:
        """The row's contract fields (tab-separated, no newline), or None for the slow path.

        `record` comes from orjson or is a CSV row's dict. `needs_escape`: its source
        text may hold a backslash, tab, newline, carriage return or NUL inside a value.
        `short`: its source text is at most MAX_TEXT_CHARS long, so no value is longer.
        """
        if type(record) is not dict:
            return None
        plan = self.plan(tuple(record))
        if plan is None:
            return None
        get = record.get
        values = list(map(get, plan.keys))  # get(None) is None: the absent columns
        if "" in values:
            values = [None if v == "" else v for v in values]
        if plan.nested:  # contract.nested_value, for the columns still empty
            for path, columns in _NESTED_ITEMS:
                inner: object = record
                for step in path:
                    inner = inner.get(step) if type(inner) is dict else None
                if type(inner) is dict:
                    for at, name in columns:
                        if values[at] is None:
                            value = inner.get(name)
                            if value != "":
                                values[at] = value
        extra = [(key, record[key]) for key in plan.extra]
        return self._encode(
            values,
            get(JSON_COLUMN) if plan.properties else None,
            extra,
            needs_escape,
            short,
        )

    def encode_csv(
        self, header: list[str], fields: list[str], *, needs_escape: bool, short: bool
    ) -> str | None:
        """`encode` for a CSV row given as its fields (as many as the header has; one more
        is appended)."""
        if header is not self._header:
            self._header = header
            self._csv = None
            if len(set(header)) == len(header):  # a repeated name: the slow path
                plan = self.plan(tuple(header))
                # A nested fallback needs an object, which a CSV field never is.
                if plan is not None and not plan.nested:
                    absent = len(header)

                    def at(key: str | None) -> int:
                        return absent if key is None else header.index(key)

                    self._csv = (
                        itemgetter(*(at(key) for key in plan.keys)),
                        tuple((key, at(key)) for key in plan.extra),
                        at(JSON_COLUMN) if plan.properties else absent,
                    )
        if self._csv is None:
            return None
        pick, extra_at, properties_at = self._csv
        fields.append("")  # what an absent column reads (its position is len(header))
        return self._encode(
            [value or None for value in pick(fields)],
            fields[properties_at],
            [(key, fields[i]) for key, i in extra_at],
            needs_escape,
            short,
        )

    def _encode(
        self,
        values: list,
        explicit: object,
        extra: list[tuple[str, object]],
        needs_escape: bool,
        short: bool,
    ) -> str | None:
        # Each rule in to_canonical's order; any doubt and the slow path decides.
        payload_tenant = values[TENANT_AT]
        if payload_tenant is not None and payload_tenant != self.tenant:
            return None
        values[TENANT_AT] = self.tenant
        site = values[SITE_AT]
        if site is None:
            values[SITE_AT] = self.tenant
        elif type(site) is not str or site not in self.sites:
            return None
        if None in _required(values):
            return None
        amounts = tuple(map(values.__getitem__, _DECIMAL_AT))
        has_amounts = amounts != _NO_AMOUNTS  # one compare: the common case costs least
        if has_amounts:
            for at in _DECIMAL_AT:
                values[at] = None
        # Every other value must be a string (the slow path converts ints, refuses the rest).
        if not set(map(type, values)) <= _STR_OR_NONE:
            return None
        if not short and any(len(v) > MAX_TEXT_CHARS for v in values if v is not None):
            return None

        text = values[OCCURRED_AT]
        if ":" in text:  # not epoch seconds: parse_timestamp, minus its numeric branch
            try:
                occurred_at = _fromisoformat(text.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
            if occurred_at.tzinfo is not UTC:
                if occurred_at.tzinfo is None:
                    return None
                occurred_at = occurred_at.astimezone(UTC)
        else:
            try:
                occurred_at = parse_timestamp(text)
            except ContractViolation:
                return None
        if not self.window_start <= occurred_at < self.window_end:
            return None
        if not _TRACKER_TIME(text):
            # The tracker's own form (2026-06-01T10:00:00.000Z) Postgres reads as is.
            values[OCCURRED_AT] = occurred_at.isoformat()
        for at in UNWINDOWED_TIMES:
            if values[at] is not None and not _plain_time(values[at]):
                return None
        for at, matches, known in self._patterns:
            value = values[at]
            if value is not None and value not in known:
                if not matches(value):
                    return None
                if len(known) < _KNOWN_VALUES:
                    known.add(value)
        if has_amounts:
            for (at, column), amount in zip(DECIMALS, amounts, strict=True):
                if amount is not None:
                    if type(amount) not in _NUMBER_TYPES:
                        return None
                    try:
                        values[at] = str(parse_decimal(column, amount))
                    except ContractViolation:
                        return None

        encoded = encode_properties(explicit, extra)
        if encoded is None:
            return None
        properties, keys = encoded
        nulls = values.count(None)
        core = "\t".join([NULL if v is None else v for v in values])
        if needs_escape:
            if "\x00" in core:
                return None  # Postgres cannot store it: the slow path quarantines the row
            if not (
                core.count("\t") == _SEPARATORS
                and core.count("\\") == nulls
                and "\n" not in core
                and "\r" not in core
            ):
                core = "\t".join([NULL if v is None else escape(v) for v in values])
        self.fields.update(keys)  # only now: a row the slow path takes counts its own keys
        return f"{core}\t{properties}"


def _tracker_time(text: str) -> bool:
    """`YYYY-MM-DDTHH:MM:SS.fffZ` (digits already checked by fromisoformat)."""
    return (
        len(text) == 24
        and text[23] == "Z"
        and text[10] == "T"
        and text[19] == "."
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
    )


def _plain_time(text: str) -> bool:
    """A timestamp the fast path stores as it is: the tracker's form, a real instant."""
    if not _tracker_time(text):
        return False
    try:
        _fromisoformat(text[:23] + "+00:00")
    except ValueError:
        return False
    return True


_TRACKER_TIME = _tracker_time
_STR_OR_NONE = frozenset({str, type(None)})
_DECIMAL_AT = tuple(at for at, _ in DECIMALS)
_NO_AMOUNTS = (None,) * len(DECIMALS)
_NUMBER_TYPES = frozenset({str, float, int})  # not bool, Decimal: the slow path refuses them
_SEPARATORS = len(PICKED) - 1  # tabs between the picked fields
_required = itemgetter(*REQUIRED_AT)


def encode_properties(
    explicit: object, extra: list[tuple[str, object]]
) -> tuple[str, dict[str, object]] | None:
    """`properties` as COPY text of its JSON, and as a dict; or None for the slow path.

    Rows are many: no dict is copied unless both an explicit object and extra keys
    are there to merge, and the bytes are decoded at once (short-lived buffers).
    """
    if isinstance(explicit, str) and explicit:
        try:
            explicit = orjson.loads(explicit)
        except orjson.JSONDecodeError:
            return None
    if explicit is None or explicit == "":
        props: dict[str, object] = {}
    elif isinstance(explicit, dict):
        props = explicit
    else:
        return None
    present = {key: value for key, value in extra if value is not None and value != ""}
    if present:
        props = {**props, **present} if props else present
    try:
        text = orjson.dumps(props)
    except TypeError:
        return None
    # orjson writes floats as Python does: one of 2**63 or more has an exponent "e+".
    if b"e+" in text and _has_huge_float(props):
        return None
    decoded = text.decode("utf-8")
    if "\\u0000" in decoded:
        return None  # a NUL character, or that text: the slow path decides
    return escape_backslashes(decoded), props
