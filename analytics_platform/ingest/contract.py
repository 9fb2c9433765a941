"""The event contract: what `raw.*_events` accepts, and why a record is refused.

`CONTRACT` is the contract, declared once: one `Field` per canonical column,
in column order. Every other name here (`CONTRACT_COLUMNS`, `ALIASES`,
`REQUIRED`, `KNOWN_KEYS`, the patterns) is derived from it, and so are the
fast paths (encode.py for JSON lines, csv_columns.py for CSV blocks), which
either give `to_canonical`'s row or hand the record to it. Adding a field or a
rule is one edit to `CONTRACT`.

A record arrives as a dict (a JSON line in the tracker's camelCase or in
snake_case, or a CSV row with a snake_case header). `to_canonical` returns the
canonical column values or raises `ContractViolation` with a reason code;
the loader quarantines violations with the original text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum

MAX_TEXT_CHARS = 4096
EPOCH_PATTERN = re.compile(r"-?\d+(\.\d+)?")
MAX_DECIMAL = Decimal("1e14")  # numeric(18, 4) holds less than this


class Reason(str, Enum):
    """Why a row went to quarantine (stored in `platform.quarantine.reason`)."""

    INVALID_JSON = "invalid_json"
    UNDECODABLE_BYTES = "undecodable_bytes"
    MISSING_FIELD = "missing_field"
    BAD_TIMESTAMP = "bad_timestamp"
    OUT_OF_WINDOW = "out_of_window"
    TENANT_MISMATCH = "tenant_mismatch"
    OVERSIZED_LINE = "oversized_line"
    WRONG_TYPE = "wrong_type"


class ContractViolation(ValueError):
    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Kind(str, Enum):
    """A column's type, and the rule that comes with it."""

    TEXT = "text"  # a string (an integer is read as its digits), <= MAX_TEXT_CHARS, no NUL
    TENANT = "tenant"  # if given, the folder's (or API's) tenant; stored: that tenant
    SITE = "site"  # if given, one of the tenant's sites; stored: it, else the tenant's id
    TIMESTAMP = "timestamp"  # ISO 8601 (naive is UTC) or epoch s/ms; `windowed`: in the day
    DECIMAL = "decimal"  # a number or its text, finite, |x| < 1e14
    JSON = "json"  # an object or its JSON text; the record's unknown keys are merged in


@dataclass(frozen=True)
class Field:
    """One canonical column: where its value is found and what it must be."""

    column: str
    names: tuple[str, ...]  # accepted spellings, first non-empty one wins
    kind: Kind = Kind.TEXT
    required: bool = False  # absent, null or "": quarantined `missing_field`
    pattern: re.Pattern[str] | None = None  # a TEXT value must match it in full
    rule: str = ""  # what a value breaking `pattern` is not, for the detail
    nested: tuple[str, ...] = ()  # else the `column` key of the object at this path
    reason: Reason = Reason.WRONG_TYPE  # the reason a value breaking the field's rule gets
    windowed: bool = True  # a TIMESTAMP must fall inside the day's window (else out_of_window)


UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
UTM_PARAMS = ("attribution", "utmParams")

CONTRACT: tuple[Field, ...] = (
    Field("event_id", ("eventId", "event_id"), required=True),
    Field("tenant_id", ("tenantId", "tenant_id"), Kind.TENANT, reason=Reason.TENANT_MISMATCH),
    Field("site_id", ("siteId", "site_id"), Kind.SITE, reason=Reason.TENANT_MISMATCH),
    Field(
        "event_type",
        ("eventType", "event_type"),
        required=True,
        pattern=re.compile(r"^[a-z][a-z0-9_]{0,63}$"),
        rule="a lowercase snake_case name",
    ),
    Field("event_name", ("eventName", "event_name")),
    Field(
        "occurred_at",
        ("timestamp", "occurred_at", "occurredAt"),
        Kind.TIMESTAMP,
        required=True,
        reason=Reason.BAD_TIMESTAMP,  # and out_of_window outside the day's window
    ),
    # When the collector received the event (it adds receivedAt to each): any time, since
    # an event may arrive days late; a bad one is a bad_timestamp like any other.
    Field(
        "received_at",
        ("receivedAt", "received_at"),
        Kind.TIMESTAMP,
        reason=Reason.BAD_TIMESTAMP,
        windowed=False,
    ),
    Field("visitor_id", ("visitorId", "visitor_id", "anonymousId"), required=True),
    Field("user_id", ("userId", "user_id")),
    Field("session_hint", ("sessionId", "session_id", "session_hint")),
    Field("url", ("url",)),
    Field("path", ("path",)),
    Field("referrer", ("referrer",)),
    *(Field(utm, (utm,), nested=UTM_PARAMS) for utm in UTM_FIELDS),
    Field("experiment_id", ("experiment", "experimentId", "experiment_id")),
    Field("variant", ("variant",)),
    Field("revenue", ("revenue",), Kind.DECIMAL),
    Field("currency", ("currency",), pattern=re.compile(r"^[A-Z]{3}$"), rule="ISO 4217"),
    Field("properties", ("properties",), Kind.JSON),
)

# Derived from CONTRACT: nothing below is stated anywhere else.
FIELDS: dict[str, Field] = {f.column: f for f in CONTRACT}
CONTRACT_COLUMNS: tuple[str, ...] = tuple(FIELDS)
ALIASES: dict[str, tuple[str, ...]] = {f.column: f.names for f in CONTRACT}
REQUIRED: tuple[str, ...] = tuple(f.column for f in CONTRACT if f.required)
KNOWN_KEYS = frozenset(
    {name for f in CONTRACT for name in f.names} | {f.nested[0] for f in CONTRACT if f.nested}
)
TENANT_ALIASES = next(f.names for f in CONTRACT if f.kind is Kind.TENANT)
SITE_ALIASES = next(f.names for f in CONTRACT if f.kind is Kind.SITE)
EVENT_TYPE_PATTERN = FIELDS["event_type"].pattern
CURRENCY_PATTERN = FIELDS["currency"].pattern
NUL_TEXT = "holds a NUL character (U+0000), which Postgres text and jsonb cannot store"
SURROGATE_TEXT = "holds a lone surrogate (\\ud800-\\udfff), which is not text Postgres can store"


def pick(record: Mapping[str, object], names: tuple[str, ...]) -> object:
    """The first of `names` whose value is neither null nor ""; else None."""
    for key in names:
        value = record.get(key)
        if value is not None and value != "":
            return value
    return None


def nested_value(record: Mapping[str, object], path: tuple[str, ...], key: str) -> object:
    """`record[path[0]][path[1]]...[key]` where each step is an object; else None ("" too)."""
    inner: object = record
    for step in path:
        inner = inner.get(step) if isinstance(inner, dict) else None
    value = inner.get(key) if isinstance(inner, dict) else None
    return None if value == "" else value


def text_value(column: str, value: object) -> str | None:
    """A TEXT column's value: a string, or an integer's digits; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ContractViolation(
            Reason.WRONG_TYPE, f"{column} must be a string, got {type(value).__name__}"
        )
    text = str(value)
    if len(text) > MAX_TEXT_CHARS:
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} is longer than {MAX_TEXT_CHARS}")
    if "\x00" in text:
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} {NUL_TEXT}")
    if not text.isascii() and not _encodable(text):
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} {SURROGATE_TEXT}")
    return text


def _encodable(text: str) -> bool:
    """Whether `text` is UTF-8 encodable: json.loads accepts lone surrogates (\\ud800)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def holds_nul(value: object) -> bool:
    """Whether a NUL character is in any string or key inside `value`."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


def holds_surrogate(value: object) -> bool:
    """Whether a lone surrogate is in any string or key inside `value`."""
    if isinstance(value, str):
        return not value.isascii() and not _encodable(value)
    if isinstance(value, dict):
        return any(holds_surrogate(key) or holds_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_surrogate(item) for item in value)
    return False


def parse_timestamp(value: object, label: str = "timestamp") -> dt.datetime:
    """ISO 8601 (naive means UTC) or epoch seconds/milliseconds -> aware UTC datetime.

    `label` names the field in the violation's detail."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            seconds = value / 1000 if abs(value) >= 1e11 else value
            return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
        if isinstance(value, str):
            text = value.strip()
            if ":" not in text and EPOCH_PATTERN.fullmatch(text):
                return parse_timestamp(float(text), label)
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.timezone.utc)
            return parsed.astimezone(dt.timezone.utc)
        raise TypeError
    except (TypeError, ValueError, OverflowError, OSError) as err:
        raise ContractViolation(
            Reason.BAD_TIMESTAMP, f"{label} {str(value)[:64]!r} is not ISO 8601 or epoch"
        ) from err


def parse_decimal(column: str, value: object) -> Decimal | None:
    """A DECIMAL column's value (the fast paths store `str` of it); None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} must be a number, got {value!r:.40}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as err:
        raise ContractViolation(
            Reason.WRONG_TYPE, f"{column} must be a number, got {value!r:.40}"
        ) from err
    if not amount.is_finite() or abs(amount) >= MAX_DECIMAL:
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} {value!r:.40} is out of range")
    return amount


def parse_properties(column: str, record: Mapping[str, object]) -> str:
    """The JSON column: its object (or JSON text) merged with the record's unknown keys."""
    explicit = record.get(column)
    if isinstance(explicit, str) and explicit:
        try:
            explicit = json.loads(explicit)
        except json.JSONDecodeError as err:
            raise ContractViolation(Reason.WRONG_TYPE, f"{column} is not a JSON object") from err
    if explicit is not None and explicit != "" and not isinstance(explicit, dict):
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} must be an object")
    extra = {k: v for k, v in record.items() if k not in KNOWN_KEYS and v not in (None, "")}
    properties = {**(explicit or {}), **extra}
    if holds_nul(properties):
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} {NUL_TEXT}")
    if holds_surrogate(properties):
        raise ContractViolation(Reason.WRONG_TYPE, f"{column} {SURROGATE_TEXT}")
    return json.dumps(properties, separators=(",", ":"), default=str)


def site_of(value: object, tenant: str, sites: frozenset[str]) -> str:
    """The SITE column: the site an event names if its tenant owns it; none named: the
    tenant's default site (its id). The detail names the site given and the tenant only."""
    if value is None:
        return tenant
    site = value if type(value) is str else str(value) if type(value) is int else None
    if site is None or site not in sites:
        raise ContractViolation(
            Reason.TENANT_MISMATCH,
            f"site {str(value)[:60]!r} is not a site of tenant {tenant!r}",
        )
    return site


def to_canonical(
    record: object,
    *,
    tenant: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
    sites: frozenset[str] | None = None,
) -> tuple[object, ...]:
    """Map one record to `CONTRACT_COLUMNS` values, or raise ContractViolation.

    `window_start`/`window_end` bound `occurred_at` (tolerance already applied).
    `sites`: the sites the tenant owns (tenants/sites.py); None means its default
    site only. The checks run in this order, the first failure decides the reason:
    the tenant and site, then required fields, then timestamps, then patterns, then
    every other value's type.
    """
    if not isinstance(record, dict):
        raise ContractViolation(
            Reason.WRONG_TYPE, f"an event must be a JSON object, got {type(record).__name__}"
        )
    found: dict[str, object] = {}
    for f in CONTRACT:
        value = pick(record, f.names)
        if value is None and f.nested:
            value = nested_value(record, f.nested, f.column)
        found[f.column] = value

    values: dict[str, object] = {}
    for f in CONTRACT:
        if f.kind is Kind.TENANT:
            given = found[f.column]
            if given is not None and given != tenant:
                raise ContractViolation(
                    f.reason,
                    f"payload tenant {str(given)[:60]!r} differs from folder tenant {tenant!r}",
                )
            values[f.column] = tenant
        elif f.kind is Kind.SITE:
            values[f.column] = site_of(found[f.column], tenant, sites or frozenset({tenant}))

    missing = [f.column for f in CONTRACT if f.required and found[f.column] is None]
    if missing:
        raise ContractViolation(Reason.MISSING_FIELD, f"missing required {', '.join(missing)}")

    for f in CONTRACT:
        if f.kind is Kind.TIMESTAMP and found[f.column] is not None:
            label = "timestamp" if f.windowed else f.column
            at = values[f.column] = parse_timestamp(found[f.column], label)
            if f.windowed and not window_start <= at < window_end:
                raise ContractViolation(
                    Reason.OUT_OF_WINDOW,
                    f"timestamp {at.isoformat()} is outside "
                    f"[{window_start.isoformat()}, {window_end.isoformat()})",
                )
        elif f.pattern is not None:
            text = values[f.column] = text_value(f.column, found[f.column])
            if text is not None and not f.pattern.fullmatch(text):
                raise ContractViolation(f.reason, f"{f.column} {text!r:.70} is not {f.rule}")

    for f in CONTRACT:
        if f.column in values:
            continue
        if f.kind is Kind.TEXT:
            values[f.column] = text_value(f.column, found[f.column])
        elif f.kind is Kind.DECIMAL:
            values[f.column] = parse_decimal(f.column, found[f.column])
        elif f.kind is Kind.JSON:
            values[f.column] = parse_properties(f.column, record)
        else:  # a TIMESTAMP the contract does not require, and the record lacks
            values[f.column] = None
    return tuple(values[column] for column in CONTRACT_COLUMNS)
