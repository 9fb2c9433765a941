"""Alerts: a JSON POST to a webhook (Slack/Teams/PagerDuty relays, or your own endpoint)."""

from __future__ import annotations

from collections.abc import Mapping

import requests
from dagster import ConfigurableResource
from pydantic import Field
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from analytics_platform.redaction import redact


class AlertDeliveryError(RuntimeError):
    pass


class AlertWebhookResource(ConfigurableResource):
    """ALERT_WEBHOOK_URL; empty means alerts are only logged."""

    url: str = Field(default="", description="Webhook receiving alert JSON; empty disables.")
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: int = Field(default=4, ge=0, description="Retries on connection errors and 5xx/429.")
    backoff_seconds: float = Field(default=1.0, ge=0, description="Exponential backoff factor.")

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def post(self, payload: Mapping[str, object]) -> None:
        retry = Retry(
            total=self.retries,
            backoff_factor=self.backoff_seconds,
            backoff_jitter=self.backoff_seconds / 2,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            try:
                response = session.post(self.url, json=dict(payload), timeout=self.timeout_seconds)
            except requests.RequestException as err:
                raise AlertDeliveryError(
                    f"alert to {redact(self.url)} failed after {self.retries} retries: "
                    f"{redact(str(err))}"
                ) from err
        if response.status_code >= 400:
            raise AlertDeliveryError(
                f"alert to {redact(self.url)} answered HTTP {response.status_code} "
                f"after {self.retries} retries"
            )
