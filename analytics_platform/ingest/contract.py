"""The event contract: what `raw.*_events` accepts, and why a record is refused.

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
from decimal import Decimal, InvalidOperation
from enum import Enum

CONTRACT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "tenant_id",
    "event_type",
    "event_name",
    "occurred_at",
    "visitor_id",
    "user_id",
    "session_hint",
    "url",
    "path",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "experiment_id",
    "variant",
    "revenue",
    "currency",
    "properties",
)

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

# Canonical column -> accepted spellings, first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "event_id": ("eventId", "event_id"),
    "event_type": ("eventType", "event_type"),
    "event_name": ("eventName", "event_name"),
    "occurred_at": ("timestamp", "occurred_at", "occurredAt"),
    "visitor_id": ("visitorId", "visitor_id", "anonymousId"),
    "user_id": ("userId", "user_id"),
    "session_hint": ("sessionId", "session_id", "session_hint"),
    "url": ("url",),
    "path": ("path",),
    "referrer": ("referrer",),
    "experiment_id": ("experiment", "experimentId", "experiment_id"),
    "variant": ("variant",),
    "revenue": ("revenue",),
    "currency": ("currency",),
    **{utm: (utm,) for utm in UTM_FIELDS},
}
TENANT_ALIASES = ("tenantId", "tenant_id")
REQUIRED = ("event_id", "event_type", "occurred_at", "visitor_id")
KNOWN_KEYS = frozenset(
    {alias for spellings in ALIASES.values() for alias in spellings}
    | set(TENANT_ALIASES)
    | {"attribution", "properties"}
)
EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
EPOCH_PATTERN = re.compile(r"-?\d+(\.\d+)?")
MAX_TEXT_CHARS = 4096


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


def _pick(record: Mapping[str, object], spellings: tuple[str, ...]) -> object:
    for key in spellings:
        value = record.get(key)
        if value is not None and value != "":
            return value
    return None


def _text(column: str, value: object) -> str | None:
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
    return text


NUL_TEXT = "holds a NUL character (U+0000), which Postgres text and jsonb cannot store"


def _holds_nul(value: object) -> bool:
    """Whether a NUL character is in any string or key inside `value`."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def parse_timestamp(value: object) -> dt.datetime:
    """ISO 8601 (naive means UTC) or epoch seconds/milliseconds -> aware UTC datetime."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            seconds = value / 1000 if abs(value) >= 1e11 else value
            return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
        if isinstance(value, str):
            text = value.strip()
            if ":" not in text and EPOCH_PATTERN.fullmatch(text):
                return parse_timestamp(float(text))
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.timezone.utc)
            return parsed.astimezone(dt.timezone.utc)
        raise TypeError
    except (TypeError, ValueError, OverflowError, OSError) as err:
        raise ContractViolation(
            Reason.BAD_TIMESTAMP, f"timestamp {str(value)[:64]!r} is not ISO 8601 or epoch"
        ) from err


def _revenue(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ContractViolation(Reason.WRONG_TYPE, f"revenue must be a number, got {value!r:.40}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as err:
        raise ContractViolation(
            Reason.WRONG_TYPE, f"revenue must be a number, got {value!r:.40}"
        ) from err
    if not amount.is_finite() or abs(amount) >= Decimal("1e14"):
        raise ContractViolation(Reason.WRONG_TYPE, f"revenue {value!r:.40} is out of range")
    return amount


def _properties(record: Mapping[str, object]) -> dict[str, object]:
    explicit = record.get("properties")
    if isinstance(explicit, str) and explicit:
        try:
            explicit = json.loads(explicit)
        except json.JSONDecodeError as err:
            raise ContractViolation(Reason.WRONG_TYPE, "properties is not a JSON object") from err
    if explicit is not None and explicit != "" and not isinstance(explicit, dict):
        raise ContractViolation(Reason.WRONG_TYPE, "properties must be an object")
    extra = {k: v for k, v in record.items() if k not in KNOWN_KEYS and v not in (None, "")}
    properties = {**(explicit or {}), **extra}
    if _holds_nul(properties):
        raise ContractViolation(Reason.WRONG_TYPE, f"properties {NUL_TEXT}")
    return properties


def to_canonical(
    record: object,
    *,
    tenant: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
) -> tuple[object, ...]:
    """Map one record to `CONTRACT_COLUMNS` values, or raise ContractViolation.

    `window_start`/`window_end` bound `occurred_at` (tolerance already applied).
    """
    if not isinstance(record, dict):
        raise ContractViolation(
            Reason.WRONG_TYPE, f"an event must be a JSON object, got {type(record).__name__}"
        )
    payload_tenant = _pick(record, TENANT_ALIASES)
    if payload_tenant is not None and payload_tenant != tenant:
        raise ContractViolation(
            Reason.TENANT_MISMATCH,
            f"payload tenant {str(payload_tenant)[:60]!r} differs from folder tenant {tenant!r}",
        )
    values: dict[str, object] = {
        name: _pick(record, spellings) for name, spellings in ALIASES.items()
    }
    utm = (record.get("attribution") or {}) if isinstance(record.get("attribution"), dict) else {}
    utm_params = utm.get("utmParams") if isinstance(utm.get("utmParams"), dict) else {}
    for field in UTM_FIELDS:
        values[field] = values[field] or utm_params.get(field)

    missing = [name for name in REQUIRED if values[name] is None]
    if missing:
        raise ContractViolation(Reason.MISSING_FIELD, f"missing required {', '.join(missing)}")

    occurred_at = parse_timestamp(values["occurred_at"])
    if not window_start <= occurred_at < window_end:
        raise ContractViolation(
            Reason.OUT_OF_WINDOW,
            f"timestamp {occurred_at.isoformat()} is outside "
            f"[{window_start.isoformat()}, {window_end.isoformat()})",
        )
    event_type = _text("event_type", values["event_type"])
    if not EVENT_TYPE_PATTERN.fullmatch(event_type or ""):
        raise ContractViolation(
            Reason.WRONG_TYPE, f"event_type {event_type!r:.70} is not a lowercase snake_case name"
        )
    currency = _text("currency", values["currency"])
    if currency is not None and not CURRENCY_PATTERN.fullmatch(currency):
        raise ContractViolation(Reason.WRONG_TYPE, f"currency {currency!r:.20} is not ISO 4217")

    typed_elsewhere = {"occurred_at", "event_type", "revenue", "currency"}
    canonical = {
        **{name: _text(name, values[name]) for name in ALIASES if name not in typed_elsewhere},
        "tenant_id": tenant,
        "event_type": event_type,
        "occurred_at": occurred_at,
        "revenue": _revenue(values["revenue"]),
        "currency": currency,
        "properties": json.dumps(_properties(record), separators=(",", ":"), default=str),
    }
    return tuple(canonical[column] for column in CONTRACT_COLUMNS)
