"""No module of ours imports a private part of Dagster or its libraries.

Dagster's underscore modules (`dagster._core`, `dagster._utils`, ...) change between
releases without notice; what the platform needs from them is written down instead
(e.g. the range tags are public strings, partitions.py) or wrapped in one function with
a test that pins the behaviour (dbt_project.py's version cache).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("analytics_platform", "analytics_platform_tests", "benchmarks")


def _is_dagster(module: str) -> bool:
    top = module.split(".")[0]
    return top == "dagster" or top.startswith("dagster_")


def _is_private(module: str) -> bool:
    return _is_dagster(module) and any(part.startswith("_") for part in module.split("."))


def private_dagster_imports(source: str, filename: str = "<source>") -> list[str]:
    """`file:line module` for each import of a private Dagster module in `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from dagster import _check` names a private module as much as `dagster._check`
            modules = [f"{node.module}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            modules = [node.args[0].value]
        found += [f"{filename}:{node.lineno} {m}" for m in modules if _is_private(m)]
    return found


@pytest.mark.parametrize(
    "source",
    [
        "from dagster._core.workspace.context import WorkspaceProcessContext",
        "import dagster._utils.schedules",
        "from dagster import _check",
        "from dagster_dbt.core._internal import thing",
        "import importlib\nimportlib.import_module('dagster._serdes')",
    ],
)
def test_the_checker_finds_each_form_of_private_import(source):
    assert len(private_dagster_imports(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "from dagster import AssetKey, serialize_value",
        "import dagster_graphql",
        "from dagster_dbt import DbtCliResource",
        "from ._private_of_ours import x",  # relative: our own package
        "from mylib._core import y",
    ],
)
def test_the_checker_leaves_public_imports_alone(source):
    assert private_dagster_imports(source) == []


# The only private imports allowed, each with its reason. Never platform code: a benchmark's
# set-up that no public API can do in the time (the list fails when an entry goes unused).
ALLOWED = {
    "benchmarks/scale_ui.py dagster._core.events.StepMaterializationData": (
        "seeds 400,000 materializations through the event log's batch write; every public "
        "path checks each key against the dynamic partitions, hours at that size"
    ),
}


def test_no_module_of_ours_imports_a_private_dagster_module():
    files = [path for folder in CHECKED for path in sorted((REPO / folder).rglob("*.py"))]
    assert len(files) > 50  # the folders were found
    found = [
        hit
        for path in files
        for hit in private_dagster_imports(path.read_text(), str(path.relative_to(REPO)))
    ]
    unexcused = [hit for hit in found if _without_line(hit) not in ALLOWED]
    assert unexcused == [], "private Dagster modules imported (use a public API):\n" + "\n".join(
        unexcused
    )
    assert {_without_line(hit) for hit in found} == set(ALLOWED)  # no stale exception


def _without_line(hit: str) -> str:
    """`file:line module` -> `file module`."""
    location, module = hit.split(" ", 1)
    return f"{location.rsplit(':', 1)[0]} {module}"
