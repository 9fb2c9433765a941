"""The demo generator's promises, checked with the real reader and contract."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from analytics_platform.demo.generator import FORMATS, generate_landing
from analytics_platform.ingest.contract import (
    CONTRACT_COLUMNS,
    ContractViolation,
    Reason,
    to_canonical,
)
from analytics_platform.ingest.files import read_landing_file
from analytics_platform.resources.landing import LandingZoneResource

DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(4)]
TENANTS = ("acme", "globex")


VISITOR, OCCURRED, HINT, EVENT_TYPE = map(
    CONTRACT_COLUMNS.index, ("visitor_id", "occurred_at", "session_hint", "event_type")
)


def outcome(landing: LandingZoneResource, tenant: str, day: dt.date, path):
    """(canonical rows, quarantine reasons) for one file, as the loader would decide."""
    start, end = landing.window(day)
    rows, reasons = [], Counter()
    for line in read_landing_file(path, max_line_bytes=landing.max_line_bytes):
        if line.violation is not None:
            reasons[line.violation.reason.value] += 1
            continue
        try:
            rows.append(
                to_canonical(line.record, tenant=tenant, window_start=start, window_end=end)
            )
        except ContractViolation as err:
            reasons[err.reason.value] += 1
    return rows, reasons


def count_sessions(rows) -> int:
    """ARCHITECTURE.md's rule, computed independently of dbt: per visitor in time order, a
    session starts at the first event, on a new session hint, or after a gap over 30 min."""
    sessions = 0
    previous = {}
    for row in sorted(rows, key=lambda r: (r[5], r[4])):  # visitor_id, occurred_at
        visitor, at, hint = row[VISITOR], row[OCCURRED], row[HINT]
        last = previous.get(visitor)
        if last is None or last[1] != hint or at - last[0] > dt.timedelta(minutes=30):
            sessions += 1
        previous[visitor] = (at, hint)
    return sessions


def test_every_file_yields_exactly_what_the_generator_expects(tmp_path):
    generated = generate_landing(tmp_path, TENANTS, DAYS, events_per_day=150, malformed_per_file=3)
    landing = LandingZoneResource(root=str(tmp_path))
    for (tenant, day), expected in generated.days.items():
        rows, reasons = outcome(landing, tenant, day, expected.file)
        assert len(rows) == expected.valid == 150
        assert dict(reasons) == expected.quarantined
        assert sum(reasons.values()) == 3
        assert len(rows) + sum(reasons.values()) == expected.rows_read
        assert len({row[VISITOR] for row in rows}) == expected.visitors
        assert sum(row[EVENT_TYPE] == "page_view" for row in rows) == expected.page_views
        assert count_sessions(rows) == expected.sessions


def test_formats_rotate_so_every_tenant_sees_each_one(tmp_path):
    generated = generate_landing(tmp_path, TENANTS, DAYS, events_per_day=20)
    for tenant in TENANTS:
        suffixes = {
            e.file.name.removeprefix("demo-events.")
            for (t, _), e in generated.days.items()
            if t == tenant
        }
        assert suffixes == set(FORMATS)


def test_output_is_deterministic_and_replaces_its_previous_files(tmp_path):
    first = generate_landing(tmp_path / "a", TENANTS, DAYS, events_per_day=50)
    second = generate_landing(tmp_path / "b", TENANTS, DAYS, events_per_day=50)
    for key, expected in first.days.items():
        assert expected.file.read_bytes() == second.days[key].file.read_bytes()

    # Regenerating with another tenant order changes formats; no stale file may remain.
    generate_landing(tmp_path / "a", tuple(reversed(TENANTS)), DAYS, events_per_day=50)
    for tenant in TENANTS:
        for day in DAYS:
            assert len(list((tmp_path / "a" / tenant / day.isoformat()).iterdir())) == 1


def test_event_ids_are_unique_per_tenant_and_sessions_stay_inside_the_day(tmp_path):
    generated = generate_landing(
        tmp_path, ("acme",), DAYS, events_per_day=300, malformed_per_file=0
    )
    landing = LandingZoneResource(root=str(tmp_path))
    ids, visitors_by_day = [], []
    for (tenant, day), expected in generated.days.items():
        rows, _ = outcome(landing, tenant, day, expected.file)
        ids += [row[0] for row in rows]
        visitors_by_day.append({row[VISITOR] for row in rows})
        assert count_sessions(rows) == expected.sessions
        assert all(row[OCCURRED].date() == day for row in rows)
    assert len(ids) == len(set(ids)) == 300 * len(DAYS)
    # Visitors come back on later days, and some the same day: the returning-visitor and
    # session metrics have something to count.
    assert visitors_by_day[0] & visitors_by_day[-1]
    totals = generated.totals("acme")
    assert totals["sessions"] > totals["visitors_by_day"]


def test_every_quarantine_reason_the_generator_knows_shows_up(tmp_path):
    generated = generate_landing(tmp_path, TENANTS, DAYS, events_per_day=20, malformed_per_file=3)
    for tenant in TENANTS:
        reasons = set(generated.totals(tenant)["quarantined"])
        assert {"missing_field", "bad_timestamp", "out_of_window", "tenant_mismatch"} <= reasons
        assert "wrong_type" in reasons
        assert reasons & {"invalid_json", "undecodable_bytes"}


def test_a_tenant_sent_through_a_collector_gets_json_lines_whose_defects_parse(tmp_path):
    defects = (Reason.MISSING_FIELD, Reason.WRONG_TYPE)
    generated = generate_landing(
        tmp_path, ("acme",), DAYS, events_per_day=30, formats=("jsonl",), json_defects=defects
    )
    landing = LandingZoneResource(root=str(tmp_path))
    for (tenant, day), expected in generated.days.items():
        assert expected.file.name.endswith(".jsonl")
        lines = expected.file.read_text().splitlines()
        assert all(isinstance(json.loads(line), dict) for line in lines)  # a collector takes all
        rows, reasons = outcome(landing, tenant, day, expected.file)
        assert dict(reasons) == expected.quarantined
        assert len(rows) == expected.valid == 30
    assert generated.totals("acme")["quarantined"] == {"missing_field": 4, "wrong_type": 4}

    with pytest.raises(ValueError, match="formats must be some of"):
        generate_landing(tmp_path, ("acme",), DAYS, formats=("xml",))
