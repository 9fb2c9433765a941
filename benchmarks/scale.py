"""Scale benchmark (issue 16): every part at 10, 100, 300 and 1,000 tenants, then one summary.

    .venv/bin/python benchmarks/scale.py [--parts automation,sensor,...] [--quick] [--combine-only]

Each part is its own script (its own process: several set PLATFORM_START_DATE
before importing the platform, and chDB admits one process per data path), writes
benchmarks/results/scale_<part>.json and its BENCHMARKS.md section; this driver runs
them in turn and gathers their results into benchmarks/results/scale.json.

| part | what it times |
|---|---|
| automation | the daemon's automation tick (scale_automation.py) |
| sensor | the landing sensor tick at one file per tenant-day; the daily run (scale_sensor.py) |
| history | one day's build with 1 week vs 1 year of history (scale_history.py) |
| clickhouse | a database per tenant vs shared tables with row policies (scale_clickhouse.py) |
| ui | the webserver's partition queries and `tenants list` (scale_ui.py) |
| daemon | one day for every tenant, landed and served under the daemon (scale_daemon.py) |
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ["automation", "sensor", "history", "clickhouse", "ui", "daemon"]
RESULTS = HERE / "results"


def run_part(part: str, quick: bool) -> None:
    command = [sys.executable, str(HERE / f"scale_{part}.py"), *(["--quick"] if quick else [])]
    print(f"== {part}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)


def combine(parts: list[str]) -> dict:
    """Every part's latest results, keyed by part (a part never run is left out)."""
    combined = {}
    for part in parts:
        path = RESULTS / f"scale_{part}.json"
        if path.exists():
            combined[part] = json.loads(path.read_text())
    (RESULTS / "scale.json").write_text(json.dumps(combined, indent=2) + "\n")
    return combined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", type=lambda text: text.split(","), default=PARTS, help="comma-separated parts"
    )
    parser.add_argument("--quick", action="store_true", help="each part's development run")
    parser.add_argument(
        "--combine-only", action="store_true", help="gather the parts' results, run nothing"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown parts {unknown}; choose from {PARTS}")
    if not args.combine_only:
        for part in args.parts:
            run_part(part, args.quick)
    combined = combine(PARTS)
    print(f"results/scale.json: {', '.join(combined) or 'no part has results yet'}")


if __name__ == "__main__":
    main()
