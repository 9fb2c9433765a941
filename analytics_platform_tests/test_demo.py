"""`analytics-platform demo`: every layer reconciles with the generated files, twice over."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import pytest

from analytics_platform.demo.generator import generate_landing
from analytics_platform.demo.pipeline import TenantSummary, format_summary, reconcile, run_demo

REPO = Path(__file__).resolve().parents[1]
START = dt.date(2026, 10, 5)


@pytest.fixture
def demo_env(monkeypatch, tmp_path, warehouse_url, dagster_storage_url, clickhouse_url):
    """Every variable `stack.activate` sets, so monkeypatch restores them afterwards."""
    env = {
        "DATABASE_URL": warehouse_url,
        "DAGSTER_POSTGRES_URL": dagster_storage_url,
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(tmp_path / "landing"),
        "PLATFORM_HOME": str(tmp_path / "platform"),
        "DAGSTER_HOME": str(REPO),
        "DAGSTER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_demo_loads_every_layer_as_the_generated_files_imply_and_repeats_exactly(
    demo_env, new_tenant
):
    tenants = (new_tenant("demo"), new_tenant("demo"), new_tenant("demo"))
    first = run_demo(days=2, events_per_day=60, start=START, tenants=tenants)
    assert first.mismatches == []
    assert len(first.run_ids) == 1  # the tenants were registered side by side: one run

    # Check the summary against the generator independently of `reconcile`.
    expected = generate_landing(
        Path(demo_env["LANDING_DIR"]), tenants, first.dates, events_per_day=60
    )
    for tenant in tenants:
        got, want = first.tenants[tenant], expected.totals(tenant)
        assert got.raw_rows == got.staged_rows == want["valid"] == 120
        assert got.quarantined == want["quarantined"]
        assert sum(got.quarantined.values()) == 4
        assert (got.sessions, got.page_views) == (want["sessions"], want["page_views"])
        assert got.mart_rows == got.serving_rows == 2

    second = run_demo(days=2, events_per_day=60, start=START, tenants=tenants)
    assert {t: asdict(s) for t, s in second.tenants.items()} == {
        t: asdict(s) for t, s in first.tenants.items()
    }
    printed = format_summary(second)
    assert "Every layer reconciles" in printed
    assert all(tenant in printed for tenant in tenants)


def test_reconcile_names_each_disagreement(tmp_path):
    generated = generate_landing(tmp_path, ("acme",), [START], events_per_day=30)
    want = generated.totals("acme")
    summary = TenantSummary(
        raw_rows=want["valid"] - 1,
        quarantined=want["quarantined"],
        staged_rows=want["valid"],
        mart_rows=1,
        visitors=want["visitors_by_day"],
        sessions=want["sessions"],
        page_views=want["page_views"],
        serving_rows=0,
    )
    problems = reconcile(generated, {"acme": summary})
    assert problems == [
        f"acme: raw rows is {want['valid'] - 1}, the generated files imply {want['valid']}",
        "acme: ClickHouse days is 0, the generated files imply 1",
    ]
