"""Where the platform keeps things, read from the environment in this one place.

Every setting has an embedded default so that a fresh clone works with nothing
installed or started by hand:

| variable          | default                                                   |
|-------------------|-----------------------------------------------------------|
| `PLATFORM_HOME`   | `./.platform` (embedded Postgres, chDB and Dagster files) |
| `DATABASE_URL`    | the embedded Postgres server under `PLATFORM_HOME`         |
| `CLICKHOUSE_URL`  | `chdb://<PLATFORM_HOME>/clickhouse` (in-process engine)    |
| `LANDING_DIR`     | `./data/landing`                                          |
| `PLATFORM_START_DATE` | `2026-01-01`: the first daily partition (UTC)         |
| `ALERT_WEBHOOK_URL` | empty: failed runs are logged, not posted                 |
| `TENANT_FRESHNESS_CRON` | `15 * * * *`: when `every_active_tenant_fresh` runs (UTC) |
| `LANDING_TIMESTAMP_TOLERANCE_MINUTES` | `0`: the landing loader's and checks' tolerance |
| `COLLECTOR_*`     | the event collector's limits (`collector_settings`)       |
| `KEY_CACHE_SECONDS` | `5`: how long a service trusts a key's cached state (revocation delay) |
| `LANDING_RUN_MAX_TENANTS` | `1000`: tenants one landing-sensor run covers |
| `PLATFORM_SHARD`  | empty: the code location is the deployment's only tenant shard |
| `API_CLICKHOUSE_WAIT_SECONDS` | `1`: how long the read API waits for embedded chDB before a 503 |
| `API_RESPONSE_CACHE_MB` | `64`: answers the read API keeps by ETag (0: none) |

The Dagster definitions read these through `dagster.EnvVar`; `stack.py` fills
in the defaults before Dagster starts.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CHDB_SCHEME = "chdb://"
DEFAULT_START_DATE = "2026-01-01"
DEFAULT_FRESHNESS_CRON = "15 * * * *"
DEFAULT_KEY_CACHE_SECONDS = 5.0
DEFAULT_API_CLICKHOUSE_WAIT_SECONDS = 1.0
# Measured in benchmarks/scale_sensor.py (BENCHMARKS.md, scale-sensor).
DEFAULT_LANDING_RUN_MAX_TENANTS = 1000


class SettingsError(ValueError):
    pass


def platform_start_date(environ: Mapping[str, str] | None = None) -> str:
    """`PLATFORM_START_DATE` (YYYY-MM-DD): the first day of the `tenant_day` partitions.

    Every process of a deployment must see the same value, since it defines the
    partition keys Dagster stores.
    """
    value = (os.environ if environ is None else environ).get("PLATFORM_START_DATE")
    value = value or DEFAULT_START_DATE
    try:
        dt.date.fromisoformat(value)
    except ValueError as err:
        raise SettingsError(
            f"PLATFORM_START_DATE={value!r} is not a date; use YYYY-MM-DD, e.g. 2026-01-01"
        ) from err
    if len(value) != len("YYYY-MM-DD"):
        raise SettingsError(f"PLATFORM_START_DATE={value!r}: use the YYYY-MM-DD form")
    return value


def tenant_freshness_cron(environ: Mapping[str, str] | None = None) -> str:
    """`TENANT_FRESHNESS_CRON`: when the daemon runs `every_active_tenant_fresh` (UTC)."""
    from dagster import AutomationCondition

    value = (os.environ if environ is None else environ).get("TENANT_FRESHNESS_CRON")
    value = value or DEFAULT_FRESHNESS_CRON
    # Asked of the public call that consumes the value, so the rule is exactly Dagster's
    # (five fields, no 30 February, ...); it raises a bare check error naming no variable.
    try:
        AutomationCondition.cron_tick_passed(value, "UTC")
    except Exception as err:
        raise SettingsError(
            f"TENANT_FRESHNESS_CRON={value!r} is not a cron expression Dagster accepts "
            "(five fields: minute hour day month weekday); e.g. '15 * * * *'"
        ) from err
    return value


def landing_timestamp_tolerance_minutes(environ: Mapping[str, str] | None = None) -> int:
    """`LANDING_TIMESTAMP_TOLERANCE_MINUTES`: how far outside its folder's day an event may be.

    The loader and the raw and staging checks must agree on it, so it is a setting of the
    deployment (every process sees it), not only a run's config.
    """
    value = (os.environ if environ is None else environ).get(
        "LANDING_TIMESTAMP_TOLERANCE_MINUTES", ""
    )
    try:
        minutes = int(value or 0)
    except ValueError:
        minutes = -1
    if minutes < 0:
        raise SettingsError(
            f"LANDING_TIMESTAMP_TOLERANCE_MINUTES={value!r}: use a whole number of minutes >= 0"
        )
    return minutes


def key_cache_seconds(environ: Mapping[str, str] | None = None) -> float:
    """`KEY_CACHE_SECONDS`: how long a service uses a key's (and origins') cached state.

    A revoked key or a suspended tenant is refused at most this long after the change;
    0 asks the warehouse on every request.
    """
    return _bounded_number(
        environ, "KEY_CACHE_SECONDS", DEFAULT_KEY_CACHE_SECONDS, 0, 3600, "seconds"
    )


def api_clickhouse_wait_seconds(environ: Mapping[str, str] | None = None) -> float:
    """`API_CLICKHOUSE_WAIT_SECONDS`: the read API's longest wait for embedded chDB.

    While a run holds the data path, a request waits at most this long, then is
    answered 503 `clickhouse_busy` with a Retry-After, so no answer comes later than this
    plus reopening chDB (~0.1 s) and the query itself.
    """
    return _bounded_number(
        environ,
        "API_CLICKHOUSE_WAIT_SECONDS",
        DEFAULT_API_CLICKHOUSE_WAIT_SECONDS,
        0,
        60,
        "seconds",
    )


def api_response_cache_bytes(environ: Mapping[str, str] | None = None) -> int:
    """`API_RESPONSE_CACHE_MB`: memory for answers the read API keeps by their ETag.

    An ETag names the served parts, so a kept answer is never stale; 0 turns it off.
    """
    megabytes = _bounded_number(
        environ, "API_RESPONSE_CACHE_MB", 64, 0, 65536, "megabytes", "; 0 keeps nothing"
    )
    return int(megabytes * (1 << 20))


def _bounded_number(
    environ: Mapping[str, str] | None,
    name: str,
    default: float,
    low: float,
    high: float,
    unit: str,
    note: str = "",
) -> float:
    """The setting `name` as a number from `low` to `high` (`default` when unset)."""
    value = (os.environ if environ is None else environ).get(name, "")
    try:
        number = float(value) if value else default
    except ValueError:
        number = float("nan")
    if not low <= number <= high:
        raise SettingsError(
            f"{name}={value!r}: use a number of {unit} from {low:g} to {high:g} "
            f"(default {default:g}{note})"
        )
    return number


def landing_run_max_tenants(environ: Mapping[str, str] | None = None) -> int:
    """`LANDING_RUN_MAX_TENANTS`: how many tenants' files of one day one landing run loads.

    Files landing for many tenants on the same day start one run per this many
    tenants (contiguous in registration order), not one each: a run's start (a process,
    dbt invocations, serving) costs seconds, so a thousand runs a day cannot finish on
    a small machine. A bad tenant's data fails its run; `split_failed_runs` then retries
    it in halves, so the others are built after about log2(this) more runs. 1 starts one
    run per tenant-day, as before.
    """
    value = (os.environ if environ is None else environ).get("LANDING_RUN_MAX_TENANTS", "")
    try:
        tenants = int(value) if value else DEFAULT_LANDING_RUN_MAX_TENANTS
    except ValueError:
        tenants = 0
    if not 1 <= tenants <= 10_000:
        raise SettingsError(
            f"LANDING_RUN_MAX_TENANTS={value!r}: use a whole number from 1 to 10000 "
            f"(default {DEFAULT_LANDING_RUN_MAX_TENANTS})"
        )
    return tenants


SHARD_PATTERN = "[a-z][a-z0-9]{0,15}"


def platform_shard(environ: Mapping[str, str] | None = None) -> str:
    """`PLATFORM_SHARD`: this code location's tenant shard, empty when it is the only one.

    Several shards are several code locations in one workspace and one Dagster
    instance, each with its own warehouse, ClickHouse and landing zone. Dagster needs
    an asset key to be unique in a workspace and a dynamic partitions name to be
    unique in an instance, so a shard's assets are keyed under its name
    (`eu1/stg_events`) and its tenants are the `tenants_eu1` partitions. Every
    process of one shard must see the same value.
    """
    value = (os.environ if environ is None else environ).get("PLATFORM_SHARD", "")
    if value and not re.fullmatch(SHARD_PATTERN, value):
        raise SettingsError(
            f"PLATFORM_SHARD={value!r}: use a lowercase letter then up to 15 lowercase "
            f"letters or digits (e.g. eu1), or leave it empty for a single shard"
        )
    return value


@dataclass(frozen=True)
class PlatformSettings:
    home: Path
    database_url: str | None
    clickhouse_url: str | None
    landing_dir: Path
    project_dir: Path
    alert_webhook_url: str = ""

    @property
    def embedded_postgres_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def embedded_clickhouse_url(self) -> str:
        return f"{CHDB_SCHEME}{self.home / 'clickhouse'}"

    @property
    def dagster_artifacts_dir(self) -> Path:
        return self.home / "dagster"


def load_settings(environ: os._Environ[str] | dict[str, str] | None = None) -> PlatformSettings:
    """Read the platform settings; relative paths resolve against the working directory."""
    env = os.environ if environ is None else environ
    cwd = Path.cwd()
    return PlatformSettings(
        home=(cwd / env.get("PLATFORM_HOME", ".platform")).resolve(),
        database_url=env.get("DATABASE_URL") or None,
        clickhouse_url=env.get("CLICKHOUSE_URL") or None,
        landing_dir=(cwd / env.get("LANDING_DIR", "data/landing")).resolve(),
        project_dir=(cwd / env.get("DAGSTER_HOME", ".")).resolve(),
        alert_webhook_url=env.get("ALERT_WEBHOOK_URL", ""),
    )


# name -> (default, minimum): the collector's limits, each a positive number.
COLLECTOR_DEFAULTS: dict[str, tuple[float, float]] = {
    # A segment is closed (renamed to *.jsonl, visible to the landing sensor) this old...
    "COLLECTOR_SEGMENT_MAX_AGE_SECONDS": (10.0, 0.05),
    # ...or once it holds this many bytes, whichever comes first.
    "COLLECTOR_SEGMENT_MAX_BYTES": (64 << 20, 1024),
    # The body of one request, compressed and decompressed alike.
    "COLLECTOR_MAX_BODY_BYTES": (1 << 20, 1024),
    "COLLECTOR_MAX_EVENTS_PER_REQUEST": (1000, 1),
    # Each tenant's token bucket: events per second, and how many may come at once.
    "COLLECTOR_RATE_EVENTS_PER_SECOND": (5000.0, 0.001),
    "COLLECTOR_RATE_BURST_EVENTS": (20000, 1),
}


@dataclass(frozen=True)
class CollectorSettings:
    """The collector's limits (`analytics-platform collector`); see COLLECTOR_DEFAULTS."""

    landing_dir: Path
    start_date: dt.date
    segment_max_age_seconds: float = COLLECTOR_DEFAULTS["COLLECTOR_SEGMENT_MAX_AGE_SECONDS"][0]
    segment_max_bytes: int = int(COLLECTOR_DEFAULTS["COLLECTOR_SEGMENT_MAX_BYTES"][0])
    max_body_bytes: int = int(COLLECTOR_DEFAULTS["COLLECTOR_MAX_BODY_BYTES"][0])
    max_events_per_request: int = int(COLLECTOR_DEFAULTS["COLLECTOR_MAX_EVENTS_PER_REQUEST"][0])
    rate_events_per_second: float = COLLECTOR_DEFAULTS["COLLECTOR_RATE_EVENTS_PER_SECOND"][0]
    rate_burst_events: int = int(COLLECTOR_DEFAULTS["COLLECTOR_RATE_BURST_EVENTS"][0])


def _collector_number(env: Mapping[str, str], name: str) -> float:
    default, minimum = COLLECTOR_DEFAULTS[name]
    value = env.get(name, "")
    try:
        number = float(value) if value else default
    except ValueError:
        number = float("nan")
    if not number >= minimum or number == float("inf"):
        raise SettingsError(f"{name}={value!r}: use a number >= {minimum:g} (default {default:g})")
    return number


def collector_settings(environ: Mapping[str, str] | None = None) -> CollectorSettings:
    """The collector's settings: LANDING_DIR, PLATFORM_START_DATE and the COLLECTOR_* limits.

    A burst smaller than the largest request could never be admitted, so it is refused here.
    """
    env = os.environ if environ is None else environ
    numbers = {name: _collector_number(env, name) for name in COLLECTOR_DEFAULTS}
    settings = CollectorSettings(
        landing_dir=(Path.cwd() / env.get("LANDING_DIR", "data/landing")).resolve(),
        start_date=dt.date.fromisoformat(platform_start_date(env)),
        segment_max_age_seconds=numbers["COLLECTOR_SEGMENT_MAX_AGE_SECONDS"],
        segment_max_bytes=int(numbers["COLLECTOR_SEGMENT_MAX_BYTES"]),
        max_body_bytes=int(numbers["COLLECTOR_MAX_BODY_BYTES"]),
        max_events_per_request=int(numbers["COLLECTOR_MAX_EVENTS_PER_REQUEST"]),
        rate_events_per_second=numbers["COLLECTOR_RATE_EVENTS_PER_SECOND"],
        rate_burst_events=int(numbers["COLLECTOR_RATE_BURST_EVENTS"]),
    )
    if settings.rate_burst_events < settings.max_events_per_request:
        raise SettingsError(
            f"COLLECTOR_RATE_BURST_EVENTS={settings.rate_burst_events} is smaller than "
            f"COLLECTOR_MAX_EVENTS_PER_REQUEST={settings.max_events_per_request}: a full "
            "request could never be admitted; raise the burst or lower the request limit"
        )
    return settings


LOG_FORMATS = ("text", "json")


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """`LOG_FORMAT`: `text` (default) or `json` (one JSON object per line) for the CLI."""
    value = ((os.environ if environ is None else environ).get("LOG_FORMAT") or "text").lower()
    if value not in LOG_FORMATS:
        raise SettingsError(f"LOG_FORMAT={value!r}: use text or json")
    return value


@dataclass(frozen=True)
class ObservedStores:
    """The stores a service's /health probes and /metrics read (observability)."""

    warehouse_url: str | None
    clickhouse_url: str
    landing_dir: Path
    dagster_storage_url: str | None


def observed_stores(
    environ: Mapping[str, str] | None = None, *, warehouse_url: str | None = None
) -> ObservedStores:
    """DATABASE_URL (or the URL a service already resolved), CLICKHOUSE_URL, LANDING_DIR and
    DAGSTER_POSTGRES_URL, which defaults to the warehouse server's `dagster` database as
    `stack.platform_environment` makes it."""
    from analytics_platform.stack import DAGSTER_DATABASE, with_database

    env = os.environ if environ is None else environ
    settings = load_settings(dict(env))
    warehouse = warehouse_url or settings.database_url
    dagster = env.get("DAGSTER_POSTGRES_URL") or (
        with_database(warehouse, DAGSTER_DATABASE) if warehouse else None
    )
    return ObservedStores(
        warehouse_url=warehouse,
        clickhouse_url=settings.clickhouse_url or settings.embedded_clickhouse_url,
        landing_dir=settings.landing_dir,
        dagster_storage_url=dagster,
    )
