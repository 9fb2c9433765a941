"""Small, hand-written landing files whose expected results are worked out in the tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path


def tracker_event(
    event_id: str,
    visitor: str,
    at: str,
    event_type: str = "page_view",
    session: str = "s1",
    **extra: object,
) -> dict[str, object]:
    """An event in the tracker's camelCase shape; `at` is an ISO timestamp."""
    return {
        "eventId": event_id,
        "eventType": event_type,
        "visitorId": visitor,
        "sessionId": session,
        "timestamp": at,
        "url": "https://shop.example/",
        "path": "/",
        **extra,
    }


def write_lines(path: Path, lines: list[object]) -> Path:
    """Write JSON lines; a str item is written verbatim (for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def day_file(landing: Path, tenant: str, day: dt.date, name: str = "events.jsonl") -> Path:
    return landing / tenant / day.isoformat() / name


def worked_example(day: dt.date) -> list[object]:
    """Eleven lines with known outcomes (see EXPECTED).

    visitor v1: 10:00, 10:10, then 10:50 (a 40 min gap > 30) -> 2 sessions
    visitor v2: one event delivered twice -> 1 staged event, 1 session
    visitor v3: hint s5 then s6 five minutes later -> 2 sessions
    line 6 broken JSON, line 7 no visitor, line 8 next day, line 9 blank
    """
    d = day.isoformat()
    return [
        tracker_event("e1", "v1", f"{d}T10:00:00Z"),
        tracker_event("e2", "v1", f"{d}T10:10:00Z", path="/pricing"),
        tracker_event("e3", "v1", f"{d}T10:50:00Z", event_type="signup"),
        tracker_event("e4", "v2", f"{d}T11:00:00Z", session="s9"),
        tracker_event("e4", "v2", f"{d}T11:00:00Z", session="s9"),
        '{"eventId": "e9", "eventType": ',
        {"eventId": "e5", "eventType": "page_view", "timestamp": f"{d}T11:30:00Z"},
        tracker_event("e6", "v3", f"{(day + dt.timedelta(days=1)).isoformat()}T00:00:01Z"),
        "",
        tracker_event("e7", "v3", f"{d}T12:00:00Z", session="s5", screen="1440x900"),
        tracker_event("e8", "v3", f"{d}T12:05:00Z", session="s6"),
    ]


EXPECTED = {
    "rows_read": 10,  # the blank line carries no event
    "raw_rows": 7,
    "quarantine": {6: "invalid_json", 7: "missing_field", 8: "out_of_window"},
    "staged_rows": 6,
    "visitors": 3,
    "sessions": 5,
    "page_views": 5,
    "events": 6,
}
