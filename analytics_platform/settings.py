"""Where the platform keeps things, read from the environment in this one place.

Every setting has an embedded default so that a fresh clone works with nothing
installed or started by hand:

| variable          | default                                                   |
|-------------------|-----------------------------------------------------------|
| `PLATFORM_HOME`   | `./.platform` (embedded Postgres, chDB and Dagster files) |
| `DATABASE_URL`    | the embedded Postgres server under `PLATFORM_HOME`         |
| `CLICKHOUSE_URL`  | `chdb://<PLATFORM_HOME>/clickhouse` (in-process engine)    |
| `LANDING_DIR`     | `./data/landing`                                          |

The Dagster definitions read these through `dagster.EnvVar`; `stack.py` fills
in the defaults before Dagster starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHDB_SCHEME = "chdb://"


@dataclass(frozen=True)
class PlatformSettings:
    home: Path
    database_url: str | None
    clickhouse_url: str | None
    landing_dir: Path
    project_dir: Path

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
    )


def redact_url(url: str) -> str:
    """A connection URL safe to print: the password replaced by '***'."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
