"""Wall time and peak RSS of `replenish seed` (full default history) into SQLite and MariaDB.

Each run is a fresh subprocess (so peak RSS is the seed's own), into a scratch SQLite file and a scratch MariaDB
database that is created and dropped here. Budgets: SQLite <= 90 s, MariaDB <= 180 s.

    .venv/bin/python benchmarks/bench_seed.py [--scenario FILE] [--skip-mysql] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MYSQL_ADMIN = os.environ.get("REPLENISH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
BUDGET_S = {"sqlite": 90.0, "mariadb": 180.0}


def _seed(url: str, scenario: str | None) -> dict:
    cmd = [sys.executable, "-m", "replenish.cli", "seed", "--db", url, "--quiet"]
    if scenario:
        cmd += ["--scenario", scenario]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (ru_maxrss, KiB on Linux)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"seed failed ({url}): {err.read().strip()[-500:]}")
        return {"seconds": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 0),
                "output": out.read().strip().replace("\n", " ")}


def bench_sqlite(scenario: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        out = _seed(f"sqlite:///{db}", scenario)
        out["db_mb"] = round(db.stat().st_size / 2**20, 0)
    return out


def bench_mariadb(scenario: str | None) -> dict:
    from sqlalchemy import create_engine, text

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(MYSQL_ADMIN, connect_args={"connect_timeout": 5})
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        return _seed(f"{MYSQL_ADMIN}/{name}", scenario)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=None)
    ap.add_argument("--skip-mysql", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {"sqlite": bench_sqlite(args.scenario)}
    if not args.skip_mysql:
        results["mariadb"] = bench_mariadb(args.scenario)
    for k, v in results.items():
        v["budget_s"] = BUDGET_S[k]
        v["within_budget"] = v["seconds"] <= BUDGET_S[k]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'target':<10}{'seconds':>10}{'budget':>10}{'peak MB':>10}  ok")
    for k, v in results.items():
        print(f"{k:<10}{v['seconds']:>10.1f}{v['budget_s']:>10.0f}{v['peak_rss_mb']:>10.0f}  "
              f"{'yes' if v['within_budget'] else 'NO'}")
    print(json.dumps({k: {"seconds": v["seconds"], "peak_rss_mb": v["peak_rss_mb"]} for k, v in results.items()}))


if __name__ == "__main__":
    main()
