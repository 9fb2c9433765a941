"""JSON log lines: one object per line, with the request id when a request is served.

The HTTP services always log this way; the CLI does with `--log-format json` or
`LOG_FORMAT=json` (settings.log_format).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

import orjson

from analytics_platform.service.observability.context import current_request

# Attributes every LogRecord has; anything else passed in `extra=` becomes a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id"?, ...extra}` on one line."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            line["service"] = self.service
        request = current_request()
        if request is not None:
            line["request_id"] = request.request_id
            if request.tenant:
                line["tenant"] = request.tenant
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def use_json_logs(service: str | None = None, level: int = logging.INFO) -> None:
    """Send every log record of this process to stderr as JSON lines (replacing handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
