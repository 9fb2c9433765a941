"""Jobs users launch from the UI or the CLI."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

# The main job: every layer, raw -> staging -> marts -> serving, for the chosen tenant-days.
tenant_day_pipeline = define_asset_job(
    name="tenant_day_pipeline",
    selection=AssetSelection.all(),
    description="Load, model and serve the selected tenant-days end to end.",
)

jobs = [tenant_day_pipeline]
