"""Benchmark the feature job on the full default (realistic) history: full build, one-day incremental update, peak RSS.

Seeds the default scenario with the generator into a temporary SQLite file (or uses ``--db URL``), then runs
``replenish features build`` in child processes so the peak RSS is the feature job's own. Targets (2 cores):
full build <= 15 s, one-day incremental <= 3 s, peak <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"full_s": 15.0, "incremental_s": 3.0, "peak_rss_mb": 2048.0}


def _seed(url: str) -> dict:
    import generator
    from forecasting.source.db import make_engine
    from forecasting.source.schema import build_schema

    schema = build_schema()
    engine = make_engine(url, schema)
    return generator.generate(engine, schema, None, seed=42)


# Runs the CLI in a child and reports that child's own peak RSS (KB) as the last stderr line. VmHWM, not
# ru_maxrss: Linux keeps ru_maxrss across fork+exec, so it would report the (seeding) parent's peak.
_CHILD = (
    "import re, runpy, sys\n"
    "sys.argv = ['replenish'] + sys.argv[1:]\n"
    "try:\n    runpy.run_module('replenish.cli', run_name='__main__')\n"
    "finally:\n"
    "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
    "    print(hwm.group(1) if hwm else 0, file=sys.stderr)\n"
)


def _build(url: str, out: Path, until: date, full: bool) -> tuple[dict, float, float]:
    """(summary, wall seconds including interpreter start, peak RSS in MB) of one ``features build`` child."""
    cmd = [sys.executable, "-c", _CHILD, "features", "build", "--db", url, "--out", str(out),
           "--until", until.isoformat(), "--json"] + (["--full"] if full else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"features build failed: {proc.stderr.strip()}")
    peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
    return json.loads(proc.stdout), wall, peak_mb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="an already seeded source (default: seed the default scenario into a temp file)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'source.db'}"
        if not args.db:
            t0 = time.perf_counter()
            info = _seed(url)
            print(f"seeded default scenario: {info['orders_completed']:,} completed orders, "
                  f"{info['history_start']} .. {info['history_end']} ({time.perf_counter() - t0:.1f} s)")
            end = date.fromisoformat(info["history_end"])
        else:
            end = None
        out = Path(tmp) / "features"
        if end is None:
            first, _, _ = _build(url, out, date.today(), full=True)
            end = date.fromisoformat(first["watermark"])
        full, full_wall, full_mb = _build(url, out, end - timedelta(days=1), full=True)
        inc, inc_wall, inc_mb = _build(url, out, end, full=False)
        peak_mb = max(full_mb, inc_mb)
    figures = {
        "full_s": round(full["seconds"], 2), "full_wall_s": round(full_wall, 2),
        "incremental_s": round(inc["seconds"], 2), "incremental_wall_s": round(inc_wall, 2),
        "incremental_window": inc["window"], "peak_rss_mb": round(peak_mb, 1),
        "rows": inc["rows"], "lines_read_full": full["lines_read"], "censored_share": inc["censored_share"],
    }
    print(json.dumps(figures, indent=2))
    ok = True
    for key, limit in TARGETS.items():
        status = "ok" if figures[key] <= limit else "MISSED"
        ok &= status == "ok"
        print(f"{key:>15}: {figures[key]:>8} (target <= {limit}) {status}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
