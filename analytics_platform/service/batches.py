"""From a request body to landing lines: parse, find the write key, pick each event's day.

The collector checks only that the body is JSON and that each event is an object; the
loader applies the event contract (and quarantines with reasons) later. Bodies:

- a JSON array of events: `[{...}, {...}]`;
- NDJSON: one event object per line (a single object is one line);
- an envelope for beacons, which cannot set headers: `{"writeKey": "...", "events": [...]}`.

A write key may also ride in the events themselves (`writeKey`, or `write_key`): it is
removed from every event before landing, so no key ever reaches the warehouse. Each
landed line is the event plus `receivedAt`, the collector's receive time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from analytics_platform.ingest.contract import FIELDS, ContractViolation, parse_timestamp, pick

WRITE_KEY_NAMES = ("writeKey", "write_key")
RECEIVED_AT = "receivedAt"
_RECEIVED_NAMES = (RECEIVED_AT, "received_at")  # the collector's own field; never a client's
TIMESTAMP_NAMES = FIELDS["occurred_at"].names
# A client clock slightly ahead may name tomorrow; anything later is not a real day yet.
MAX_DAYS_AHEAD = 1


class Refused(Exception):
    """A request the collector answers with an error: HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Batch:
    """A request's events (write keys already removed) and the key the body carried."""

    events: list[dict]
    write_key: str | None


def _loads(data: bytes) -> object:
    """orjson first; the json module decides what orjson refuses (huge integers, NaN)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as fast_error:
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise fast_error from None


def _ndjson_lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(body.split(b"\n"), start=1):
        if line.strip():
            yield number, line


def _parse_ndjson(body: bytes) -> tuple[list[object], list[str]]:
    """(events, where each came from): `line N` per event."""
    events, places = [], []
    for number, line in _ndjson_lines(body):
        try:
            events.append(_loads(line))
        except orjson.JSONDecodeError as err:
            raise Refused(400, "invalid_json", f"line {number}: {err}") from None
        places.append(f"line {number}")
    return events, places


def _document(body: bytes) -> tuple[list[object], list[str], str | None]:
    """(events, their places, the envelope's writeKey) of a body in any accepted shape."""
    start = body.lstrip()[:1]
    if start == b"[":
        try:
            parsed = _loads(body)
        except orjson.JSONDecodeError as err:
            raise Refused(400, "invalid_json", f"the JSON array: {err}") from None
        return parsed, [f"event {i} of the array" for i in range(len(parsed))], None
    if start == b"{":
        try:
            parsed = _loads(body)
        except orjson.JSONDecodeError:
            events, places = _parse_ndjson(body)  # several objects, one per line
            return events, places, None
        events = parsed.get("events") if isinstance(parsed, dict) else None
        if isinstance(events, list):
            key = pick(parsed, WRITE_KEY_NAMES)
            return events, [f"events[{i}]" for i in range(len(events))], _key_text(key)
        return [parsed], ["line 1"], None
    events, places = _parse_ndjson(body)
    return events, places, None


def _key_text(key: object) -> str | None:
    if key is None or isinstance(key, str):
        return key
    raise Refused(400, "invalid_write_key", "writeKey must be a string")


def parse_batch(body: bytes, *, max_events: int, single: bool = False) -> Batch:
    """The events of a body (`single`: exactly one event object, as /collect takes).

    Raises Refused naming the line or index of the first problem.
    """
    if not body.strip():
        raise Refused(400, "empty_batch", "the body holds no events")
    events, places, key = _document(body)
    if single and (len(events) != 1 or places[0] != "line 1"):
        raise Refused(400, "not_an_object", "/collect takes one event object; use /v1/events")
    if not events:
        raise Refused(400, "empty_batch", "the body holds no events")
    if len(events) > max_events:
        raise Refused(
            413,
            "too_many_events",
            f"{len(events)} events in one request; send at most {max_events} per request",
        )
    keys = {key} if key is not None else set()
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise Refused(
                400,
                "not_an_object",
                f"{places[index]} is a JSON {type(event).__name__}, not an event object",
            )
        for name in WRITE_KEY_NAMES:
            if name in event:
                keys.add(_key_text(event.pop(name)))
    keys.discard(None)
    if len(keys) > 1:
        raise Refused(400, "conflicting_write_keys", "the body carries different write keys")
    return Batch(events, next(iter(keys), None))


def landing_day(event: dict, receive_day: dt.date, start_date: dt.date) -> dt.date:
    """The UTC day of the event's timestamp, if the landing sensor can run that day;
    else the receive day, where the loader quarantines the event with its reason."""
    value = pick(event, TIMESTAMP_NAMES)
    if value is None:
        return receive_day
    try:
        day = parse_timestamp(value).date()
    except ContractViolation:
        return receive_day
    if day < start_date or (day - receive_day).days > MAX_DAYS_AHEAD:
        return receive_day
    return day


def _dumps(event: dict) -> bytes:
    try:
        return orjson.dumps(event)
    except (TypeError, orjson.JSONEncodeError):  # what only the json module parsed
        return json.dumps(event, separators=(",", ":")).encode()


def landing_lines(
    events: list[dict], received_at: dt.datetime, start_date: dt.date
) -> dict[str, bytes]:
    """Day (YYYY-MM-DD) -> the newline-terminated lines of the events landing there."""
    stamp = received_at.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    receive_day = received_at.astimezone(dt.timezone.utc).date()
    by_day: dict[dt.date, list[bytes]] = {}
    for event in events:
        for name in _RECEIVED_NAMES:
            event.pop(name, None)
        event[RECEIVED_AT] = stamp
        day = landing_day(event, receive_day, start_date)
        by_day.setdefault(day, []).append(_dumps(event))
    return {day.isoformat(): b"\n".join(lines) + b"\n" for day, lines in by_day.items()}
