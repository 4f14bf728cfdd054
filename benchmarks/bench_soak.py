"""Soak: POST /replenishment at a steady rate for a long time; p99 per window, fresh against the end.

Target (issue 12): p99 at 100 req/s stays within 2x its fresh value over 30 minutes. A worker whose per-request
objects were retained got slower with uptime (full collections growing from 10 ms to ~150 ms); this run shows
whether latency, server memory and the count of objects the collector tracks stay flat.

    .venv/bin/python benchmarks/bench_soak.py [--world DIR] [--minutes 30] [--window-s 60] [--rate 100] [--json]

Requests carry their inventory and cycle through ``--variants`` bodies with jittered counts (as ``bench_api.py``).
The open-loop client is ``bench_api.open_loop`` (requests start on a fixed schedule).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import ROOT, open_loop, prepare_world, serve, stop  # noqa: E402


def _post(url: str, body: bytes) -> dict:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def bodies(url: str, variants: int, seed: int = 7) -> list[bytes]:
    """Requests for the first store and order date with the service's own counts, jittered (``variants`` bodies)."""
    status = _post(f"{url}/status", b"{}")
    store, day = status["stores"][0], status["order_dates"][0]
    first = _post(f"{url}/replenishment", json.dumps({"store_id": store, "order_date": day}).encode())
    inventory = [{"material_id": ln["material_id"], "on_hand": ln["on_hand_used"], "on_order": ln["on_order"]}
                 for ln in first["lines"]]
    rng = np.random.default_rng(seed)
    return [json.dumps({"store_id": store, "order_date": day, "inventory": [
        {**item, "on_hand": round(item["on_hand"] * float(rng.uniform(0.5, 1.5)), 1)} for item in inventory]
    }).encode() for _ in range(max(variants, 1))]


def rss_mb(pid: int) -> float:
    """Resident memory of the server's process tree (the BentoML worker included)."""
    try:
        p = psutil.Process(pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", help="an existing serving.devworld folder (default: build one in a temp folder)")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--window-s", type=float, default=60.0, help="p99 is reported per window of this many seconds")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--variants", type=int, default=1000)
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = ap.parse_args()
    tmp, world = prepare_world(args.world, "bench-soak-")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "REPLENISH_CONFIG": str(world / "config.yaml"), "PYTHONPATH": path}
    env.pop("REPLENISH_API_TOKEN", None)
    proc, url = serve("serving.service:Replenishment", ROOT, env, tmp / "service.log")
    windows = []
    try:
        reqs = bodies(url, args.variants)
        n = max(1, round(args.minutes * 60 / args.window_s))
        t0 = time.monotonic()
        for i in range(n):
            w = asyncio.run(open_loop(f"{url}/replenishment", reqs, args.rate, args.window_s))
            w.update(window=i, minute=round((time.monotonic() - t0) / 60, 1), server_rss_mb=round(rss_mb(proc.pid)),
                     load=round(os.getloadavg()[0], 2))
            windows.append(w)
            print(f"  {w['minute']:5.1f} min: p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms, max {w['max_ms']} ms, "
                  f"{w['achieved_rps']} req/s, codes {w['codes']}, server RSS {w['server_rss_mb']} MB, "
                  f"load {w['load']}", file=sys.stderr if args.json else sys.stdout, flush=True)  # progress
    finally:
        stop(proc)
    fresh, end = windows[0], windows[-1]
    ratio = end["p99_ms"] / fresh["p99_ms"] if fresh["p99_ms"] else float("nan")
    worst = max(w["p99_ms"] for w in windows)
    result = {
        "minutes": args.minutes, "rate": args.rate, "window_s": args.window_s, "windows": windows,
        "p99_fresh_ms": fresh["p99_ms"], "p99_end_ms": end["p99_ms"], "p99_end_over_fresh": round(ratio, 2),
        "p99_worst_window_ms": worst, "rss_fresh_mb": fresh["server_rss_mb"], "rss_end_mb": end["server_rss_mb"],
        "non_200": sum(c for w in windows for code, c in w["codes"].items() if int(code) != 200),
        "target_end_within_2x_fresh": bool(ratio <= 2.0), "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"soak {args.minutes:g} min at {args.rate:g} req/s: p99 fresh {result['p99_fresh_ms']} ms, end "
              f"{result['p99_end_ms']} ms ({ratio:.2f}x; target <= 2x: {result['target_end_within_2x_fresh']}), worst "
              f"window {worst} ms; server RSS {result['rss_fresh_mb']} -> {result['rss_end_mb']} MB; "
              f"{result['non_200']} non-200 answers")


if __name__ == "__main__":
    main()
