"""Validating a slice with a Pandera model, and reporting what failed in a readable way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from analytics_platform.shard import asset_key

MAX_SAMPLES = 20
MAX_VALUE_CHARS = 80


@dataclass(frozen=True)
class Outcome:
    """Which rules a slice broke, how many rows each, and a few examples."""

    rows: int
    failed_rows_by_rule: dict[str, int]
    samples: list[dict[str, object]]

    @property
    def passed(self) -> bool:
        return not self.failed_rows_by_rule

    def to_check_result(
        self,
        check_name: str,
        asset: str,
        severity: AssetCheckSeverity,
        slice_description: str,
    ) -> AssetCheckResult:
        failed = self.failed_rows_by_rule
        description = (
            f"{len(failed)} rule(s) failed on {slice_description}: "
            + ", ".join(f"{rule} ({rows} rows)" for rule, rows in failed.items())
            if failed
            else f"{self.rows} rows of {slice_description} pass every rule"
        )
        metadata: dict[str, object] = {"rows_checked": self.rows, "slice": slice_description}
        if failed:
            metadata |= {
                "failed_rules": MetadataValue.json(failed),
                "failure_samples": MetadataValue.md(samples_table(self.samples)),
            }
        return AssetCheckResult(
            asset_key=asset_key(asset),
            check_name=check_name,
            passed=self.passed,
            severity=severity,
            description=description,
            metadata=metadata,
        )


def _shown(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def samples_table(samples: Sequence[dict[str, object]]) -> str:
    """Markdown table of failure samples (values truncated; payload columns never read)."""
    if not samples:
        return ""
    columns = list(dict.fromkeys(key for sample in samples for key in sample))
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_shown(s.get(c)) for c in columns) + " |" for s in samples),
    ]
    return "\n".join(lines)


def validate(model: type[pa.DataFrameModel], frame: pd.DataFrame, keys: Sequence[str]) -> Outcome:
    """Every rule of `model` on `frame`; `keys` identify a row in the samples."""
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        return _outcome(err.failure_cases, frame, keys)
    return Outcome(rows=len(frame), failed_rows_by_rule={}, samples=[])


def _rule(case: pd.Series) -> str:
    column = case["column"]
    check = str(case["check"])
    # Row-wide checks are reported once per column of the row: name them once.
    if case["schema_context"] == "DataFrameSchema" or column is None:
        return check
    return f"{column}: {check}"


def _plain(value: object) -> object:
    """numpy/pandas scalars as plain Python values."""
    return value.item() if hasattr(value, "item") else value


def _sample(case: pd.Series, frame: pd.DataFrame, keys: Sequence[str]) -> dict[str, object]:
    """One failure: the row's keys and the offending value, never the whole row."""
    sample: dict[str, object] = {"rule": case["rule"]}
    index = case["index"]
    has_row = index is not None and not pd.isna(index) and index in frame.index
    if has_row:
        sample |= {key: _plain(frame.at[index, key]) for key in keys if key in frame.columns}
    # A column rule shows the offending value; a row rule's columns are among the keys.
    if case["schema_context"] != "DataFrameSchema":
        sample["value"] = case["failure_case"]
    return sample


def _outcome(cases: pd.DataFrame, frame: pd.DataFrame, keys: Sequence[str]) -> Outcome:
    cases = cases.assign(rule=cases.apply(_rule, axis=1))
    failed: dict[str, int] = {}
    samples_by_rule: dict[str, list[dict[str, object]]] = {}
    for rule, group in cases.groupby("rule", sort=True):
        rows = group.dropna(subset=["index"]).drop_duplicates(subset=["index"])
        # A failure without a row (a wrong dtype, a missing column) counts once.
        failed[str(rule)] = max(len(rows), 1)
        examples = (rows if len(rows) else group).head(MAX_SAMPLES)
        samples_by_rule[str(rule)] = [_sample(case, frame, keys) for _, case in examples.iterrows()]
    # Up to MAX_SAMPLES in all, taken from each failed rule in turn.
    samples: list[dict[str, object]] = []
    for round_ in range(MAX_SAMPLES):
        for rule_samples in samples_by_rule.values():
            if round_ < len(rule_samples) and len(samples) < MAX_SAMPLES:
                samples.append(rule_samples[round_])
    return Outcome(rows=len(frame), failed_rows_by_rule=failed, samples=samples)
