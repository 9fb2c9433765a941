"""Running the installed commands (`analytics-platform`, `dagster`) as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cli_environment(
    tmp_path: Path, warehouse_url: str, storage_url: str, clickhouse_url: str, landing_dir: Path
) -> dict[str, str]:
    """The environment of an `analytics-platform` or `dagster` process on these stores."""
    return {
        **os.environ,
        "DATABASE_URL": warehouse_url,
        "DAGSTER_POSTGRES_URL": storage_url,
        "CLICKHOUSE_URL": clickhouse_url,
        "LANDING_DIR": str(landing_dir),
        "PLATFORM_HOME": str(tmp_path / "platform"),
        "DAGSTER_HOME": str(REPO),
        "DAGSTER_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result
