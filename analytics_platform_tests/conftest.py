"""Fixtures that start real servers: Postgres (DATABASE_URL's server or embedded) and chDB.

Each test session gets a fresh warehouse database, dropped at the end, so a
server that already holds data is never touched. Tests share that database
and keep out of each other's way by using their own tenant ids.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance
from psycopg import sql

from analytics_platform.dbt_project import dbt_project
from analytics_platform.dbt_project import prepare as prepare_manifest
from analytics_platform.resources.clickhouse import ClickHouseResource
from analytics_platform.resources.landing import LandingZoneResource
from analytics_platform.resources.postgres import PostgresResource
from analytics_platform.stack import (
    start_embedded_postgres,
    stop_embedded_postgres,
    with_database,
)
from analytics_platform_tests.cli_harness import cli_environment


def pytest_configure(config: pytest.Config) -> None:
    # Test modules import the code location, which reads the dbt manifest.
    if not dbt_project().manifest_path.exists():
        prepare_manifest()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each module's tests in their written order.

    `make test` spreads whole modules over two workers (pytest-xdist, `--dist
    loadfile`); the longest modules starting first keeps one from ending alone
    at the tail. The order is the same in every worker, as xdist requires.
    """
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Postgres server: DATABASE_URL's when set, else an embedded one for the session."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield with_database(configured, "postgres")
        return
    data_dir = tmp_path_factory.mktemp("embedded-postgres") / "pgdata"
    url = start_embedded_postgres(data_dir)
    yield url
    stop_embedded_postgres(data_dir)


def _create_database(server_url: str, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def _drop_database(server_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def warehouse_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty warehouse database for this test session."""
    url = _create_database(postgres_server_url, "ap_test")
    PostgresResource(url=url).ensure_warehouse()
    yield url
    _drop_database(postgres_server_url, url)


@pytest.fixture(scope="session")
def dagster_storage_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh database for Dagster's Postgres instance storage."""
    url = _create_database(postgres_server_url, "ap_test_dagster")
    yield url
    _drop_database(postgres_server_url, url)


@pytest.fixture
def fresh_database(postgres_server_url: str) -> Iterator[callable]:
    """Makes fresh databases on the test server (each dropped after the test)."""
    made: list[str] = []

    def make(prefix: str = "ap_test_fresh") -> str:
        made.append(_create_database(postgres_server_url, prefix))
        return made[-1]

    yield make
    for url in made:
        _drop_database(postgres_server_url, url)


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb') / 'clickhouse'}"


@pytest.fixture
def postgres(warehouse_url: str) -> PostgresResource:
    return PostgresResource(url=warehouse_url)


@pytest.fixture
def clickhouse(clickhouse_url: str) -> ClickHouseResource:
    """The session's chDB, serving through a scratch database of the test's own: tests
    that look at what serving leaves in its scratch never see another test's (a run
    stopped mid-serving leaves its scratch table behind)."""
    return ClickHouseResource(
        url=clickhouse_url,
        scratch_database=f"_serving_load_{uuid.uuid4().hex[:8]}",
        lock_timeout_seconds=60,
    )


@pytest.fixture
def landing_dir(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    root.mkdir()
    return root


@pytest.fixture
def platform_env(
    monkeypatch: pytest.MonkeyPatch, warehouse_url: str, clickhouse_url: str, landing_dir: Path
) -> dict[str, str]:
    """The variables `defs` resolves its resources from, pointing at the test stores."""
    env = {
        "DATABASE_URL": warehouse_url,
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(landing_dir),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.fixture
def new_tenant() -> callable:
    """Makes tenant ids unique to the test, so tests sharing the database never collide."""

    def make(label: str = "t") -> str:
        return f"{label}_{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def resources(
    postgres: PostgresResource, clickhouse: ClickHouseResource, landing_dir: Path
) -> dict:
    from analytics_platform.dbt_project import dbt_resource

    return {
        "postgres": postgres,
        "clickhouse": clickhouse,
        "landing": LandingZoneResource(root=str(landing_dir)),
        "dbt": dbt_resource(),
    }


@pytest.fixture
def cli_env(
    tmp_path: Path,
    warehouse_url: str,
    dagster_storage_url: str,
    clickhouse_url: str,
    landing_dir: Path,
) -> dict[str, str]:
    """The environment of a CLI process on the session's stores."""
    return cli_environment(
        tmp_path, warehouse_url, dagster_storage_url, clickhouse_url, landing_dir
    )
