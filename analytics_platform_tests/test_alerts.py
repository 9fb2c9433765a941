"""run_failure_alert posts a JSON alert to a real local webhook, retrying, without secrets."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import DagsterEventType, build_run_status_sensor_context, job, op

from analytics_platform.resources.alerts import AlertDeliveryError, AlertWebhookResource
from analytics_platform.sensors.alerts import run_failure_alert


class Webhook:
    """A webhook on 127.0.0.1 that fails the first `failures` posts with HTTP 503."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.bodies: list[dict] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.bodies.append(body)
                status = 503 if len(webhook.bodies) <= webhook.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/dagster"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    server = Webhook(failures=2)
    yield server
    server.close()


@op
def load_the_slice():
    raise RuntimeError(
        "could not connect to postgresql://loader:hunter2@db.internal/analytics "
        "(Authorization: Bearer sk_live_abc123)"
    )


@job
def failing_load():
    load_the_slice()


def failure_context(instance, resources):
    result = failing_load.execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags={"dagster/partition": "2026-11-05|acme"},
    )
    assert not result.success
    (entry,) = instance.all_logs(result.run_id, of_type=DagsterEventType.RUN_FAILURE)
    return build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources=resources,
    ).for_run_failure(), result.run_id


def test_a_failed_run_posts_one_alert_with_tenant_partition_and_a_redacted_error(instance, webhook):
    alerts = AlertWebhookResource(url=webhook.url, backoff_seconds=0.01)
    context, run_id = failure_context(instance, {"alerts": alerts})
    run_failure_alert(context)

    # Two 503s, then accepted: three deliveries of the same alert.
    assert len(webhook.bodies) == 3 and webhook.bodies[0] == webhook.bodies[-1]
    alert = webhook.bodies[-1]
    assert alert["run_id"] == run_id
    assert alert["job"] == "failing_load"
    assert (alert["tenant"], alert["partition"]) == ("acme", "2026-11-05|acme")
    assert "could not connect" in alert["error"] and "load_the_slice" in alert["error"]
    assert "hunter2" not in alert["error"] and "sk_live_abc123" not in alert["error"]


def test_an_unreachable_webhook_fails_loudly_after_its_retries(instance):
    alerts = AlertWebhookResource(url="http://127.0.0.1:9/hook", retries=1, backoff_seconds=0)
    context, _ = failure_context(instance, {"alerts": alerts})
    with pytest.raises(AlertDeliveryError, match=r"127\.0\.0\.1:9"):
        run_failure_alert(context)


def test_without_a_webhook_nothing_is_posted(instance, webhook):
    context, _ = failure_context(instance, {"alerts": AlertWebhookResource(url="")})
    run_failure_alert(context)
    assert webhook.bodies == []
