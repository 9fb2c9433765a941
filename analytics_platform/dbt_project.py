"""Where the dbt project lives, and preparing its manifest ahead of time.

Importing the code location reads `target/manifest.json` but never parses dbt;
`analytics-platform prepare` (run by `make`) writes that manifest.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging.version import Version

DEFAULT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"


class ManifestMissing(RuntimeError):
    pass


@functools.cache
def dbt_project() -> DbtProject:
    project_dir = Path(os.environ.get("DBT_PROJECT_DIR", DEFAULT_PROJECT_DIR))
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir)


def manifest_path() -> Path:
    """The prepared manifest, or a clear error saying how to create it."""
    path = dbt_project().manifest_path
    if not path.exists():
        raise ManifestMissing(
            f"dbt manifest {path} is missing: run `make prepare` "
            "(or `analytics-platform prepare`) once after installing or changing dbt models"
        )
    return path


def dbt_executable() -> str:
    """The dbt installed next to this Python, so an un-activated virtualenv still works."""
    beside_python = Path(sys.executable).with_name("dbt")
    return str(beside_python) if beside_python.exists() else "dbt"


_DBT_VERSIONS: dict[str, Version] = {}


class PlatformDbtCliResource(DbtCliResource):
    """The dbt CLI that builds the staging and marts models (dagster-dbt's resource)."""

    # The docstring is the resource's description in the UI. dagster-dbt runs `dbt --version`
    # (2 s of CPU, up to 9 s at load 4) every time a step initializes the resource, i.e. for
    # each dbt step of each run; the answer cannot change while the process lives, so it is
    # asked once. Kept, though the hook is private (dagster-dbt 0.29.27 offers no public one
    # and caches per resource only): test_definitions pins the one `--version` per process.

    @property
    def _cli_version(self) -> Version:
        if self.dbt_executable not in _DBT_VERSIONS:
            _DBT_VERSIONS[self.dbt_executable] = DbtCliResource._cli_version.func(self)
        return _DBT_VERSIONS[self.dbt_executable]


def dbt_resource() -> DbtCliResource:
    return PlatformDbtCliResource(project_dir=dbt_project(), dbt_executable=dbt_executable())


def prepare() -> Path:
    """Parse the dbt project into `target/manifest.json` (partial parsing stays on)."""
    project = dbt_project()
    dbt_resource().cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project.manifest_path


SLICE_ENV = "ANALYTICS_PLATFORM_SLICE"
PARTIAL_PARSE = "partial_parse.msgpack"


def parse_state_file(libpq_env: Mapping[str, str]) -> Path:
    """Where dbt's parse state for this connection is kept between invocations.

    dbt re-parses the whole project (about 10 s here) when the connection it
    parsed against differs, and `prepare` rarely saw the database runs use; so
    each invocation starts from the state the last one against the same
    database left, one file per connection.
    """
    identity = "|".join(libpq_env.get(k, "") for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE"))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return dbt_project().target_path / f"parse-state-{digest}.msgpack"


def invocation_target(name: str, libpq_env: Mapping[str, str]) -> Path:
    """A fresh target folder for one dbt invocation, seeded with the reusable parse state."""
    target = dbt_project().target_path / f"{name}-{uuid.uuid4().hex[:12]}"
    target.mkdir(parents=True)
    state = parse_state_file(libpq_env)
    if state.exists():
        shutil.copyfile(state, target / PARTIAL_PARSE)
    return target


def keep_parse_state(target: Path, libpq_env: Mapping[str, str]) -> None:
    """Keep the invocation's parse state for the next one (atomically: runs overlap)."""
    produced = target / PARTIAL_PARSE
    if not produced.exists():
        return
    state = parse_state_file(libpq_env)
    staged = state.with_name(f".{state.name}.{uuid.uuid4().hex[:8]}")
    shutil.copyfile(produced, staged)
    os.replace(staged, state)
