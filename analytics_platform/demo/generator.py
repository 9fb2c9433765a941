"""Synthetic landing files that look like a real tracker's exports, with known outcomes.

Each tenant-day gets one file in the landing layout, in one of the four formats
the loader reads (camelCase JSON lines, gzipped or not; snake_case CSV, gzipped
or not), rotating by tenant and day so every tenant sees every format. Events
come in sessions of returning and new visitors, with attribution, experiments,
signups and purchases; a few malformed lines per file exercise quarantine.

The generator knows what every line must become, so `GeneratedLanding` carries
the expected counts per tenant-day: tests and the demo compare the stores
against it. Output is a pure function of the arguments (seeded, gzip mtime 0).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analytics_platform.ingest.contract import CONTRACT_COLUMNS, Reason

FILE_STEM = "demo-events"
FORMATS = ("jsonl", "jsonl.gz", "csv.gz", "csv")
# The exporter's CSV: the contract's columns in snake_case, the session hint as session_id.
CSV_HEADER = tuple("session_id" if c == "session_hint" else c for c in CONTRACT_COLUMNS)
JSON_DEFECTS = (
    Reason.INVALID_JSON,
    Reason.MISSING_FIELD,
    Reason.BAD_TIMESTAMP,
    Reason.OUT_OF_WINDOW,
    Reason.TENANT_MISMATCH,
    Reason.WRONG_TYPE,
)
# A CSV line cannot be broken JSON; a Latin-1 export stands in for it.
CSV_DEFECTS = (Reason.UNDECODABLE_BYTES, *JSON_DEFECTS[1:])

PAGES = ("/", "/pricing", "/features", "/blog/launch", "/docs", "/signup", "/checkout")
# (utm_source, utm_medium, referrer) by how a visitor first arrives.
ARRIVALS = (
    (None, None, None),
    (None, None, "https://www.google.com/"),
    ("google", "cpc", "https://www.google.com/"),
    ("facebook", "social", "https://www.facebook.com/"),
    ("newsletter", "email", None),
    (None, None, "https://news.ycombinator.com/"),
    ("adnet", "display", None),
)
ARRIVAL_WEIGHTS = (30, 25, 15, 10, 8, 7, 5)
EXPERIMENT = "checkout_button"
VARIANTS = ("control", "treatment")


@dataclass(frozen=True)
class DayExpectation:
    """What one tenant-day's file must become once loaded and modelled."""

    file: Path
    rows_read: int
    valid: int
    quarantined: dict[str, int]
    visitors: int
    sessions: int
    page_views: int


@dataclass
class GeneratedLanding:
    root: Path
    days: dict[tuple[str, dt.date], DayExpectation] = field(default_factory=dict)

    def expected(self, tenant: str, day: dt.date) -> DayExpectation:
        return self.days[(tenant, day)]

    def totals(self, tenant: str) -> dict[str, object]:
        """Sums over a tenant's days: valid rows, page views, sessions, quarantine by reason."""
        mine = [e for (t, _), e in self.days.items() if t == tenant]
        reasons: Counter[str] = Counter()
        for e in mine:
            reasons.update(e.quarantined)
        return {
            "valid": sum(e.valid for e in mine),
            "page_views": sum(e.page_views for e in mine),
            "sessions": sum(e.sessions for e in mine),
            "visitors_by_day": sum(e.visitors for e in mine),
            "quarantined": dict(sorted(reasons.items())),
        }


@dataclass
class _Visitor:
    visitor_id: str
    arrival: tuple[str | None, str | None, str | None]
    variant: str | None
    user_id: str | None = None


def _timestamp(moment: dt.datetime, style: str) -> str:
    """The tracker sends ISO 8601; the CSV exporter of the gzipped kind sends epoch millis."""
    if style == "csv.gz":
        return str(int(moment.timestamp() * 1000))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _session_events(
    rng: random.Random,
    visitor: _Visitor,
    session_id: str,
    start: dt.datetime,
    budget: int,
) -> list[dict[str, object]]:
    """A visit: page views a few seconds to minutes apart, sometimes a signup or purchase."""
    utm_source, utm_medium, referrer = visitor.arrival
    events: list[dict[str, object]] = []
    known_user = visitor.user_id
    moment = start
    for step in range(min(budget, rng.randint(1, 8))):
        path = rng.choice(PAGES) if step else rng.choice(PAGES[:4])
        event = {
            "event_type": "page_view",
            "occurred_at": moment,
            "path": path,
            "referrer": referrer if step == 0 else f"https://shop.example{events[-1]['path']}",
            "utm_source": utm_source if step == 0 else None,
            "utm_medium": utm_medium if step == 0 else None,
            "utm_campaign": "black_friday" if step == 0 and utm_medium == "cpc" else None,
            "user_id": known_user,
        }
        events.append(event)
        moment += dt.timedelta(seconds=rng.randint(5, 600))
    if len(events) < budget and rng.random() < 0.12:
        if visitor.user_id is None:
            visitor.user_id = f"user_{visitor.visitor_id[2:]}"
            events.append(
                {
                    "event_type": "signup",
                    "occurred_at": moment,
                    "path": "/signup",
                    "user_id": visitor.user_id,
                }
            )
        else:
            events.append(
                {
                    "event_type": "purchase",
                    "occurred_at": moment,
                    "path": "/checkout",
                    "revenue": rng.choice(("19.00", "49.00", "99.00", "249.50")),
                    "currency": "EUR",
                    "user_id": known_user,
                }
            )
    for event in events:
        event.update(visitor_id=visitor.visitor_id, session_id=session_id)
        if visitor.variant:
            event.update(experiment_id=EXPERIMENT, variant=visitor.variant)
    return events


def _day_events(
    rng: random.Random, tenant: str, day: dt.date, visitors: list[_Visitor], count: int
) -> tuple[list[dict[str, object]], int]:
    """Exactly `count` events in whole visits inside the day; returns (events, sessions)."""
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)
    returning = rng.sample(visitors, k=min(len(visitors), max(1, count // 12)))
    events: list[dict[str, object]] = []
    sessions = 0
    while len(events) < count:
        if returning:
            visitor = returning.pop()
        else:
            arrival = rng.choices(ARRIVALS, weights=ARRIVAL_WEIGHTS)[0]
            variant = rng.choice(VARIANTS) if rng.random() < 0.5 else None
            visitor = _Visitor(f"v_{tenant}_{len(visitors):05d}", arrival, variant)
            visitors.append(visitor)
        # Visits start before 22:00 and last under 90 minutes: none crosses midnight.
        start = midnight + dt.timedelta(seconds=rng.randint(0, 22 * 3600 - 1))
        session_id = f"s_{day:%Y%m%d}_{sessions:05d}"
        visit = _session_events(rng, visitor, session_id, start, count - len(events))
        events += visit
        sessions += 1
        # Some come back later the same day, more than 30 minutes after leaving: a new
        # session, whether the client opened a new session id or kept the old one.
        back = visit[-1]["occurred_at"] + dt.timedelta(minutes=rng.randint(35, 180))
        if len(events) < count and back.hour < 22 and back.date() == day and rng.random() < 0.2:
            hint = session_id if rng.random() < 0.5 else f"{session_id}_b"
            events += _session_events(rng, visitor, hint, back, count - len(events))
            sessions += 1
    for number, event in enumerate(events):
        event["event_id"] = f"evt_{day:%Y%m%d}_{number:06d}"
        event["url"] = f"https://{tenant}.example{event['path']}"
    return events, sessions


def tenant_events(
    tenant: str, days: Sequence[dt.date], *, events_per_day: int = 400, seed: int = 7
) -> Iterator[tuple[dt.date, list[dict[str, object]]]]:
    """The events `generate_landing` writes for one tenant, day by day, as dicts.

    For callers that load rows themselves (the history benchmark COPYs a year into
    raw): the same visitors return across days, half of them in the experiment.
    """
    visitors: list[_Visitor] = []
    for day in sorted(days):
        rng = random.Random(f"{seed}/{tenant}/{day.isoformat()}")
        events, _sessions = _day_events(rng, tenant, day, visitors, events_per_day)
        yield day, sorted(events, key=lambda e: e["occurred_at"])


def _tracker_json(event: dict[str, object], tenant: str, style: str) -> dict[str, object]:
    """An event as the JavaScript tracker posts it: camelCase, utm nested under attribution."""
    utm = {k: event.get(k) for k in ("utm_source", "utm_medium", "utm_campaign") if event.get(k)}
    payload = {
        "eventId": event["event_id"],
        "tenantId": tenant,
        "eventType": event["event_type"],
        "timestamp": _timestamp(event["occurred_at"], style),
        "visitorId": event["visitor_id"],
        "userId": event.get("user_id"),
        "sessionId": event["session_id"],
        "url": event["url"],
        "path": event["path"],
        "referrer": event.get("referrer"),
        "attribution": {"utmParams": utm} if utm else None,
        "experiment": event.get("experiment_id"),
        "variant": event.get("variant"),
        "revenue": float(event["revenue"]) if event.get("revenue") else None,
        "currency": event.get("currency"),
        "screen": "1440x900",
    }
    return {k: v for k, v in payload.items() if v is not None}


def _csv_row(event: dict[str, object], tenant: str, style: str) -> list[str]:
    values = {
        **{k: event.get(k) for k in CSV_HEADER},
        "tenant_id": tenant,
        "occurred_at": _timestamp(event["occurred_at"], style),
        "properties": json.dumps({"screen": "1440x900"}),
    }
    return ["" if values[k] is None else str(values[k]) for k in CSV_HEADER]


def _csv_line(fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def _defect_line(
    reason: Reason, event: dict[str, object], tenant: str, day: dt.date, style: str
) -> bytes:
    """A line that must land in quarantine for `reason` (built from a valid event)."""
    if reason is Reason.UNDECODABLE_BYTES:
        row = _csv_row({**event, "path": "/caf\u00e9"}, tenant, style)
        return _csv_line(row).encode("latin-1")
    return _defect_text(reason, event, tenant, day, style).encode("utf-8")


def _defect_text(
    reason: Reason, event: dict[str, object], tenant: str, day: dt.date, style: str
) -> str:
    event = {**event, "event_id": f"bad_{event['event_id']}"}
    if reason is Reason.OUT_OF_WINDOW:
        event["occurred_at"] = event["occurred_at"] + dt.timedelta(days=2)
    is_csv = style.startswith("csv")
    if is_csv:
        row = _csv_row(event, tenant, style)
        column = CSV_HEADER.index
        if reason is Reason.WRONG_TYPE:
            return _csv_line(row[:-3])  # a row with the wrong field count
        if reason is Reason.MISSING_FIELD:
            row[column("visitor_id")] = ""
        elif reason is Reason.BAD_TIMESTAMP:
            row[column("occurred_at")] = f"{day:%d/%m/%Y} noon"
        elif reason is Reason.TENANT_MISMATCH:
            row[column("tenant_id")] = f"not_{tenant}"
        return _csv_line(row)
    payload = _tracker_json(event, tenant, style)
    if reason is Reason.INVALID_JSON:
        return json.dumps(payload)[:-12]
    if reason is Reason.MISSING_FIELD:
        del payload["visitorId"]
    elif reason is Reason.BAD_TIMESTAMP:
        payload["timestamp"] = "yesterday at noon"
    elif reason is Reason.TENANT_MISMATCH:
        payload["tenantId"] = f"not_{tenant}"
    elif reason is Reason.WRONG_TYPE:
        payload["revenue"] = "a lot"
    return json.dumps(payload)


def _write(path: Path, lines: list[bytes]) -> None:
    """Write then rename, as the landing convention asks of every producer."""
    data = b"\n".join(lines) + b"\n"
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    partial = path.with_name(f"{path.name}.tmp")
    partial.write_bytes(data)
    partial.replace(path)


def generate_landing(
    root: Path,
    tenants: Sequence[str],
    days: Sequence[dt.date],
    *,
    events_per_day: int = 400,
    malformed_per_file: int = 2,
    seed: int = 7,
    formats: Sequence[str] = FORMATS,
    json_defects: Sequence[Reason] = JSON_DEFECTS,
) -> GeneratedLanding:
    """Write one landing file per tenant-day under `root` and return what each must yield.

    Files rotate through `formats` (a subset of FORMATS); a JSON file's malformed lines
    cycle through `json_defects`. The demo's collector tenant gets JSON lines only, with
    defects that still parse (a collector refuses a body that is not JSON). Files this
    generator wrote before for the same tenant-days are replaced, so running it twice
    leaves the same landing zone.
    """
    if events_per_day < 1 or malformed_per_file < 0:
        raise ValueError("events_per_day must be >= 1 and malformed_per_file >= 0")
    unknown = sorted(set(formats) - set(FORMATS)) + sorted(
        str(r) for r in set(json_defects) - set(JSON_DEFECTS)
    )
    if unknown or not formats or not json_defects:
        raise ValueError(
            f"formats must be some of {FORMATS} and json_defects some of "
            f"{[r.value for r in JSON_DEFECTS]}; not {unknown or 'none'}"
        )
    generated = GeneratedLanding(root=root)
    for tenant_index, tenant in enumerate(tenants):
        visitors: list[_Visitor] = []
        defects_written = 0
        for day_index, day in enumerate(sorted(days)):
            rng = random.Random(f"{seed}/{tenant}/{day.isoformat()}")
            style = formats[(tenant_index + day_index) % len(formats)]
            events, sessions = _day_events(rng, tenant, day, visitors, events_per_day)
            events.sort(key=lambda e: e["occurred_at"])

            if style.startswith("csv"):
                texts = [_csv_line(CSV_HEADER)]
                texts += [_csv_line(_csv_row(e, tenant, style)) for e in events]
                defects = CSV_DEFECTS
            else:
                texts = [json.dumps(_tracker_json(e, tenant, style)) for e in events]
                defects = tuple(json_defects)
            lines = [text.encode("utf-8") for text in texts]
            quarantined: Counter[str] = Counter()
            for _ in range(malformed_per_file):
                # Cycle through the reasons across a tenant's files, so each one shows up.
                reason = defects[defects_written % len(defects)]
                defects_written += 1
                line = _defect_line(reason, rng.choice(events), tenant, day, style)
                lines.insert(rng.randint(1 if style.startswith("csv") else 0, len(lines)), line)
                quarantined[reason.value] += 1

            folder = root / tenant / day.isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(f"{FILE_STEM}.*"):
                stale.unlink()
            path = folder / f"{FILE_STEM}.{style}"
            _write(path, lines)
            generated.days[(tenant, day)] = DayExpectation(
                file=path,
                rows_read=len(events) + malformed_per_file,
                valid=len(events),
                quarantined=dict(sorted(quarantined.items())),
                visitors=len({e["visitor_id"] for e in events}),
                sessions=sessions,
                page_views=sum(e["event_type"] == "page_view" for e in events),
            )
    return generated
