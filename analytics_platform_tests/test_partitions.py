"""tenant_day keys, the slice a run covers, and tenant id validation."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from dagster import MultiPartitionKey

from analytics_platform.assets.dbt import (
    dbt_build_args,
    in_database,
    partitioned_dbt_vars,
    slice_environment,
)
from analytics_platform.partitions import TenantDay, parse_tenant_day, slice_window, tenant_days
from analytics_platform.tenants.ids import InvalidTenantId, validate_tenant_id

D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)


def test_keys_parse_from_strings_and_multi_partition_keys():
    expected = TenantDay("acme", D1)
    assert parse_tenant_day("2026-11-01|acme") == expected
    assert parse_tenant_day(MultiPartitionKey({"tenant": "acme", "date": "2026-11-01"})) == expected
    assert parse_tenant_day(expected.partition_key) == expected


def test_a_run_over_several_tenants_is_one_window():
    slices = tenant_days(["2026-11-02|globex", "2026-11-02|acme"])
    window = slice_window(slices)
    assert window.tenants == ("acme", "globex")
    assert (window.start_date, window.end_date) == (D2, D2)
    assert partitioned_dbt_vars(window) == {
        "tenants": ["acme", "globex"],
        "start_date": "2026-11-02",
        "end_date": "2026-11-02",
    }


def test_a_run_over_several_days_is_one_window():
    window = slice_window(tenant_days([f"{d}|acme" for d in (D3, D1, D2)]))
    assert window.tenants == ("acme",)
    assert window.dates == [D1, D2, D3]


def test_a_set_that_is_not_a_rectangle_is_refused_rather_than_widened():
    # acme on D1 and D3 only: a D1..D3 window would rebuild D2 without being asked.
    with pytest.raises(ValueError, match="rectangle"):
        slice_window(tenant_days(["2026-11-01|acme", "2026-11-03|acme"]))
    with pytest.raises(ValueError, match="rectangle"):
        slice_window(tenant_days(["2026-11-01|acme", "2026-11-02|globex"]))
    with pytest.raises(ValueError, match="at least one"):
        slice_window([])


def test_dbt_gets_the_slice_in_its_environment_not_its_vars():
    # --vars would make dbt re-parse the whole project on every run.
    assert dbt_build_args() == ["build"]
    assert dbt_build_args(full_refresh=True) == ["build", "--full-refresh"]
    env = slice_environment(
        {"tenants": ["acme"], "start_date": "2026-11-01", "end_date": "2026-11-01"}
    )
    assert json.loads(env["ANALYTICS_PLATFORM_SLICE"]) == {
        "tenants": ["acme"],
        "start_date": "2026-11-01",
        "end_date": "2026-11-01",
    }


def test_the_manifest_is_pointed_at_the_database_dbt_runs_against():
    manifest = {
        "metadata": {"adapter_type": "postgres"},
        "nodes": {
            "model.p.stg": {
                "database": "analytics",
                "schema": "staging",
                "relation_name": '"analytics"."staging"."stg"',
            },
            "test.p.t": {"database": "analytics", "relation_name": None},
        },
        "sources": {
            "source.p.raw.e": {
                "database": "analytics",
                "schema": "raw",
                "relation_name": '"analytics"."raw"."e"',
            }
        },
    }
    moved = in_database(manifest, 'ci"db')
    assert moved["nodes"]["model.p.stg"] == {
        "database": 'ci"db',
        "schema": "staging",
        "relation_name": '"ci""db"."staging"."stg"',
    }
    assert moved["sources"]["source.p.raw.e"]["relation_name"] == '"ci""db"."raw"."e"'
    # Tests have no relation of their own; dagster-dbt still looks them up by database.
    assert moved["nodes"]["test.p.t"] == {"database": 'ci"db', "relation_name": None}
    assert moved["metadata"] == manifest["metadata"]
    # The prepared manifest itself is left as it was.
    assert manifest["nodes"]["model.p.stg"]["database"] == "analytics"


@pytest.mark.parametrize(
    "bad",
    ["acme; drop table x", "../etc", "ACME", "é", "a" * 200, "", "a", "1acme", "acme-eu", None, 42],
)
def test_bad_tenant_ids_are_refused_with_what_a_valid_one_looks_like(bad):
    with pytest.raises(InvalidTenantId, match="lowercase letter"):
        validate_tenant_id(bad)
    if isinstance(bad, str):
        with pytest.raises(InvalidTenantId):
            parse_tenant_day(f"2026-11-01|{bad}")


@pytest.mark.parametrize("good", ["acme", "globex_eu", "a1", "x" * 40])
def test_good_tenant_ids_pass_unchanged(good):
    assert validate_tenant_id(good) == good


def test_start_date_comes_from_the_environment_and_bad_values_say_what_to_write():
    from analytics_platform.settings import SettingsError, platform_start_date

    assert platform_start_date({}) == "2026-01-01"
    assert platform_start_date({"PLATFORM_START_DATE": "2025-06-01"}) == "2025-06-01"
    for bad in ("01/06/2025", "2025-6-1", "tomorrow"):
        with pytest.raises(SettingsError, match="YYYY-MM-DD"):
            platform_start_date({"PLATFORM_START_DATE": bad})


def test_partitions_start_where_the_setting_says(monkeypatch):
    import subprocess
    import sys

    code = "from analytics_platform.partitions import daily_partitions as d; print(d.start)"
    env = {"PLATFORM_START_DATE": "2025-06-01", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.startswith("2025-06-01"), out.stderr
