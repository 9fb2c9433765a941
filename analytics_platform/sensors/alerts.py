"""`run_failure_alert`: every failed run becomes a JSON alert on ALERT_WEBHOOK_URL."""

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from analytics_platform.partitions import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from analytics_platform.redaction import redact
from analytics_platform.resources.alerts import AlertWebhookResource

MAX_ERROR_CHARS = 4000


def _root_cause(error) -> str:
    """Dagster wraps user errors ("Error occurred while executing op"); report the cause."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def failure_payload(context: RunFailureSensorContext) -> dict[str, object]:
    """What an on-call engineer needs first: which run, which tenant and partition, what broke."""
    run = context.dagster_run
    tags = run.tags
    partition = tags.get(PARTITION_NAME_TAG)
    if partition is None and ASSET_PARTITION_RANGE_START_TAG in tags:
        partition = (
            f"{tags[ASSET_PARTITION_RANGE_START_TAG]}..{tags.get(ASSET_PARTITION_RANGE_END_TAG)}"
        )
    tenant = tags.get("tenant")
    if tenant is None and partition and "|" in partition and ".." not in partition:
        tenant = partition.split("|", 1)[1]
    event = context.failure_event
    error = event.message or ""
    step_errors = [
        f"{step.step_key}: {_root_cause(step.event_specific_data.error)}"
        for step in context.get_step_failure_events()
        if step.event_specific_data is not None and step.event_specific_data.error is not None
    ]
    if step_errors:
        error = "\n".join(step_errors)
    return {
        "event": "run_failure",
        "run_id": run.run_id,
        "job": run.job_name,
        "tenant": tenant,
        "partition": partition,
        "error": redact(error)[:MAX_ERROR_CHARS],
    }


@run_failure_sensor(
    name="run_failure_alert",
    default_status=DefaultSensorStatus.RUNNING,
    description="POST a JSON alert for every failed run to ALERT_WEBHOOK_URL (when set).",
)
def run_failure_alert(context: RunFailureSensorContext, alerts: AlertWebhookResource) -> None:
    payload = failure_payload(context)
    if not alerts.enabled:
        context.log.info(f"ALERT_WEBHOOK_URL is not set; not sending {payload}")
        return
    alerts.post(payload)
