"""`make demo`: run the main job end to end on the embedded default (SQLite source, local MLflow store).

Each batch stage is a `replenish` command, so the demo shows exactly what a planner, a data scientist or a scheduler
would run; it ends by starting the API, sending one request per endpoint and printing a readable proposal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "sqlite:///data/luckin.db"
REPLENISH = [sys.executable, "-m", "replenish.cli"]


def run(title: str, args: list[str], check: bool = True) -> int:
    print(f"\n=== {title}\n$ replenish {' '.join(args)}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(REPLENISH + args, cwd=ROOT)
    if check and proc.returncode != 0:
        sys.exit(f"demo stopped: `replenish {' '.join(args)}` exited {proc.returncode}")
    print(f"--- {time.monotonic() - start:.1f} s", flush=True)
    return proc.returncode


def history_end() -> date:
    from sqlalchemy import select

    from forecasting.source.db import open_source

    engine, schema = open_source(DB)
    with engine.connect() as conn:
        meta = dict(conn.execute(select(schema["meta"].c.key, schema["meta"].c.value)).all())
    return date.fromisoformat(meta["history_end"])


def _post(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **_auth()})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _auth() -> dict[str, str]:
    token = os.environ.get("REPLENISH_API_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _get(url: str, path: str) -> int:
    try:
        with urllib.request.urlopen(url + path, timeout=5) as resp:
            return resp.status
    except (urllib.error.URLError, OSError):
        return 0


def api_demo(order_date: date) -> None:
    """Start the service on a free loopback port, call every endpoint, print one store's proposal, stop it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    print(f"\n=== API: replenish serve --port {port}", flush=True)
    log = open(ROOT / "data" / "demo-serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(REPLENISH + ["serve", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while _get(url, "/readyz") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"demo stopped: the service did not become ready (see {log.name})")
            time.sleep(1)
        print(f"GET /healthz -> {_get(url, '/healthz')}, GET /readyz -> {_get(url, '/readyz')}, "
              f"GET /metrics -> {_get(url, '/metrics')}")
        one = _post(url, "/replenishment", {"store_id": 1, "order_date": order_date.isoformat()})
        for ahead in range(1, 4):  # show the next order day that has something to order
            if any(ln["qty_packs"] > 0 for ln in one["lines"]):
                break
            one = _post(url, "/replenishment",
                        {"store_id": 1, "order_date": (order_date + timedelta(days=ahead)).isoformat()})
        batch = _post(url, "/replenishment/batch", {"order_date": order_date.isoformat()})
        fc = _post(url, "/forecast", {"store_id": 1, "start_date": order_date.isoformat(), "days": 3})
        print(f"POST /replenishment/batch -> {len(batch['stores'])} stores; POST /forecast -> "
              f"{len(fc['products'])} products x 3 days; model version {one['model_version']}, "
              f"data date {one['data_date']}")
        bake = _post(url, "/bake-plan", {"store_id": 1, "date": (order_date).isoformat()})
        print(f"POST /bake-plan -> store 1 on {bake['date']}: {bake['pieces']:,} pieces of ready food over "
              f"{len(bake['release_times'])} releases ({', '.join(bake['release_times'])}), expected waste "
              f"{bake['expected_waste_pcs']:.0f} pc (${bake['waste_usd']:,.2f}), expected lost sales "
              f"{bake['expected_lost_pcs']:.0f} pc (${bake['lost_margin_usd']:,.2f} of margin)")
        lines = [ln for ln in one["lines"] if ln["qty_packs"] > 0]
        print(f"\nStore 1, order date {one['order_date']}: {len(lines)} of {len(one['lines'])} materials to order; "
              "lines to review (!) first:")
        for ln in sorted(lines, key=lambda x: (not x["needs_review"], x["material_id"]))[:12]:
            flag = "!" if ln["needs_review"] else " "
            packs = f"{ln['qty_packs']} pack{'' if ln['qty_packs'] == 1 else 's'}"
            print(f" {flag} {ln.get('material_name') or ln['material_id']}: {packs}, delivered {ln['delivery_date']}")
            # whole words only: a sentence cut at a fixed width reads as a different sentence
            print(textwrap.fill(ln["explanation"], width=100, initial_indent="     ", subsequent_indent="     "))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    print("service stopped", flush=True)


def main() -> None:
    if run("Generate the synthetic Luckin history (skipped when already there)",
           ["seed", "--db", DB, "--if-missing", "--quiet"], check=False) != 0:
        sys.exit("demo stopped: data/luckin.db holds another history (until issue 16 the default was the classic "
                 "one, configs/scenarios/classic.yaml): `make clean` and re-run for the default (realistic) history, "
                 "or keep it with REPLENISH__GENERATOR__SCENARIO=configs/scenarios/classic.yaml")
    run("Calibration against the business report", ["stats", "--db", DB])
    run("Feature store (incremental after the first run)", ["features", "build", "--db", DB])
    run("Train: 4-origin backtest (our models vs incumbent vs oracle), final fit, MLflow run, registry",
        ["train", "--db", DB, "--if-changed"])
    if run("Promote the new version to champion if it beats the current one", ["promote", "--db", DB],
           check=False) != 0:
        sys.exit("demo stopped: promote failed")
    order_date = history_end() + timedelta(days=1)
    run("Batch forecasts with the champion into the forecast cache", ["forecast"])
    run(f"Tomorrow's proposal ({order_date}) for every store", ["plan", "--date", order_date.isoformat(), "--db", DB])
    api_demo(order_date)
    print(f"\nDemo finished. The planner's view: reports/{order_date}/index.html (and one page per store).\n"
          "The runs, metrics, plots and model versions: `.venv/bin/replenish mlflow ui`, then http://127.0.0.1:5000.")


if __name__ == "__main__":
    main()
