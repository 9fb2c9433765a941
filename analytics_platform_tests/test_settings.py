"""Settings that Dagster consumes are refused by the same rule Dagster applies, with the
variable named."""

from __future__ import annotations

import pytest
from dagster import ScheduleDefinition

from analytics_platform.settings import (
    SettingsError,
    landing_run_max_tenants,
    platform_shard,
    tenant_freshness_cron,
)

# Worked out by hand from cron's five fields (minute hour day-of-month month weekday) and
# Dagster's own extra rule: a day that February never has is refused.
ACCEPTED = ["15 * * * *", "*/10 * * * *", "0 9 * * 1-5", "0 0 29 2 *", "@daily"]
REFUSED = [
    "every hour",  # not cron at all
    "* * * * * *",  # six fields: seconds resolution, which Dagster does not schedule
    "61 * * * *",  # minute out of range
    "0 0 30 2 *",  # 30 February never comes
    "0 0 31 2 *",
]


@pytest.mark.parametrize("cron", ACCEPTED)
def test_a_cron_dagster_schedules_is_accepted_unchanged(cron):
    assert tenant_freshness_cron({"TENANT_FRESHNESS_CRON": cron}) == cron
    # A schedule built on it is accepted too: the setting and Dagster agree.
    ScheduleDefinition(name="probe", cron_schedule=cron, job_name="probe")


@pytest.mark.parametrize("cron", REFUSED)
def test_a_cron_dagster_refuses_is_refused_naming_the_variable(cron):
    with pytest.raises(SettingsError) as refused:
        tenant_freshness_cron({"TENANT_FRESHNESS_CRON": cron})
    assert str(refused.value).startswith(f"TENANT_FRESHNESS_CRON={cron!r} is not a cron")
    assert "e.g. '15 * * * *'" in str(refused.value)
    # Not a stricter rule of our own: Dagster's schedules refuse it as well.
    with pytest.raises(Exception, match="cron"):
        ScheduleDefinition(name="probe", cron_schedule=cron, job_name="probe")


def test_the_default_cron_is_used_when_unset_or_empty():
    assert tenant_freshness_cron({}) == "15 * * * *"
    assert tenant_freshness_cron({"TENANT_FRESHNESS_CRON": ""}) == "15 * * * *"


def test_landing_runs_cover_a_thousand_tenants_unless_set():
    assert landing_run_max_tenants({}) == 1000
    assert landing_run_max_tenants({"LANDING_RUN_MAX_TENANTS": "1"}) == 1


@pytest.mark.parametrize("value", ["0", "-3", "ten", "2.5", "10001"])
def test_a_landing_run_size_that_is_no_count_of_tenants_is_refused(value):
    with pytest.raises(SettingsError, match=f"LANDING_RUN_MAX_TENANTS={value!r}: use a whole"):
        landing_run_max_tenants({"LANDING_RUN_MAX_TENANTS": value})


def test_the_shard_is_empty_unless_set():
    assert platform_shard({}) == ""
    assert platform_shard({"PLATFORM_SHARD": "eu1"}) == "eu1"


# A shard's name goes into asset keys, a partitions name and a pool name.
@pytest.mark.parametrize("value", ["EU1", "1eu", "eu-1", "eu_1", "e" * 17, "eu1/x", " eu1"])
def test_a_shard_name_that_cannot_name_keys_and_partitions_is_refused(value):
    with pytest.raises(SettingsError, match=f"PLATFORM_SHARD={value!r}: use a lowercase"):
        platform_shard({"PLATFORM_SHARD": value})
