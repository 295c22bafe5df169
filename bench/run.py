"""`make bench`: speed and memory of cxdash's heavy steps, as ratios to a reference in the same run.

Each step runs in its own process so its peak RSS is its own. Results go to bench/results.json and a
readable table on stdout. Sizes: `python -m bench.run --sizes 10000,100000` (default 10k and 100k;
add 1000000 for the full-size run, about 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def run_step(*args: str) -> dict:
    """Run ``python -m bench.steps ARGS`` and return its JSON result plus wall time and peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.steps", *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench step {args} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out["wall_seconds"] = round(wall, 3)
    # ru_maxrss of children is the max over all children so far: report it only when it grew.
    out["peak_rss_mb"] = round(max(peak, before) / 1024, 1) if peak > before else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000", help="customer counts for the demo companies")
    p.add_argument("--ingest-rows", type=int, default=1_000_000, help="rows in the ingest-throughput extract")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict = {"machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "steps": []}
    with tempfile.TemporaryDirectory(prefix="cxdash-bench-") as tmp:
        tmp = Path(tmp)
        extract = tmp / "events_1m.csv"
        results["steps"].append(run_step("make-extract", str(extract), str(args.ingest_rows)))
        ours = run_step("ingest", str(extract), f"duckdb:///{tmp / 'ingest.duckdb'}")
        ref = run_step("duckdb-read-csv", str(extract), str(tmp / "reference.duckdb"))
        results["steps"] += [ours, ref]
        results["ingest_ratio_vs_duckdb_read_csv"] = round(ours["seconds"] / ref["seconds"], 2)
        for n in sizes:
            results["steps"].append(run_step("demo", str(n), f"duckdb:///{tmp / f'demo_{n}.duckdb'}", str(tmp / f"demo_{n}")))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"{'step':<28}{'size':>12}{'seconds':>10}{'rows/s':>14}{'peak RSS MB':>13}")
    for s in results["steps"]:
        rate = f"{s['rows'] / s['seconds']:,.0f}" if s.get("rows") and s.get("seconds") else ""
        print(f"{s['step']:<28}{s.get('size', ''):>12}{s['seconds']:>10.2f}{rate:>14}{s.get('peak_rss_mb') or '':>13}")
    print(f"\ningest / DuckDB read_csv on the same {args.ingest_rows:,}-row file: "
          f"{results['ingest_ratio_vs_duckdb_read_csv']}x (target <= 3x)")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
