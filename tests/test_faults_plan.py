"""Faults in the plan's write-back: two plans for one new date at once, and a plan killed (SIGKILL) mid-write.

Concurrent writers on MariaDB deadlock on the gap locks their deletes take (error 1213); the losing transaction is
re-run whole, so both calls succeed and the table holds exactly one writer's proposal. A process killed with -9
between two insert batches leaves the previous proposal whole (MariaDB and SQLite), and the next write works.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from forecasting.source.db import make_engine
from forecasting.source.schema import build_schema
from planning.writeback import ensure_table, read_proposals, write_proposals

D = date(2026, 3, 2)
STORES = [1, 2, 3]
MATERIALS = 60
HERE = Path(__file__).resolve().parent


def rows(qty: float, day: date = D) -> list[dict]:
    """A synthetic proposal: every store x material with ``qty`` units (the writer's fingerprint)."""
    return [{"proposal_date": day, "store_id": s, "material_id": m, "qty": qty, "packs": int(qty), "pack_size": 1.0,
             "delivery_date": day + timedelta(days=2), "needs_review": False, "reason_codes": "",
             "explanation": "{}", "model_version": "v1", "data_date": day - timedelta(days=1),
             "created_at": datetime(2026, 3, 1, 6, 0)} for s in STORES for m in range(1, MATERIALS + 1)]


@pytest.mark.mysql
def test_two_plans_for_one_new_date_both_succeed(mysql_url):
    schema = build_schema()
    engine = make_engine(mysql_url, schema)
    ensure_table(engine, schema)
    write_proposals(engine, schema, D - timedelta(days=1), STORES, rows(5.0, D - timedelta(days=1)))  # history
    barrier = threading.Barrier(2, timeout=10)
    results: dict[float, dict] = {}
    errors: list[BaseException] = []

    def writer(qty: float) -> None:
        first = [True]

        def hook(done: int) -> None:
            if done == 0 and first[0]:  # both deletes done (gap locks held) before either inserts
                first[0] = False
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    pass

        try:
            results[qty] = write_proposals(engine, schema, D, STORES, rows(qty), batch_size=50, hook=hook)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(q,)) for q in (1.0, 2.0)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert set(results) == {1.0, 2.0} and time.monotonic() - t0 < 60
    assert sum(r["retries"] for r in results.values()) >= 1, results  # the deadlock happened and was absorbed
    got = read_proposals(engine, schema, D)
    assert len(got) == len(STORES) * MATERIALS
    assert got["qty"].nunique() == 1  # one writer's proposal, whole
    assert len(read_proposals(engine, schema, D - timedelta(days=1))) == len(STORES) * MATERIALS
    engine.dispose()


CHILD = """
import sys, time
sys.path[:0] = [{root!r}, {here!r}]
from forecasting.source.db import make_engine
from forecasting.source.schema import build_schema
from planning.writeback import write_proposals
from test_faults_plan import D, STORES, rows

def hook(done):
    if done >= 50:
        print("MID", flush=True)
        time.sleep(120)

schema = build_schema()
write_proposals(make_engine({url!r}, schema), schema, D, STORES, rows(9.0), batch_size=50, hook=hook)
"""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_a_plan_killed_mid_write_leaves_the_previous_proposal_whole(backend, request, tmp_path):
    url = request.getfixturevalue("mysql_url" if backend == "mysql" else "sqlite_url")
    schema = build_schema()
    engine = make_engine(url, schema)
    write_proposals(engine, schema, D, STORES, rows(1.0))
    before = read_proposals(engine, schema, D)
    code = CHILD.format(root=str(HERE.parent), here=str(HERE), url=url)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    try:
        line = child.stdout.readline()  # blocks until the first 50 rows are inserted (uncommitted)
        assert line.strip() == "MID", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    after = read_proposals(engine, schema, D)
    assert after.equals(before), "the killed write changed the stored proposal"
    t0 = time.monotonic()  # the dead writer's locks are released: the next plan writes within seconds
    again = write_proposals(engine, schema, D, STORES, rows(3.0))
    assert again["deleted"] == again["inserted"] == len(before) and time.monotonic() - t0 < 30
    assert set(read_proposals(engine, schema, D)["qty"]) == {3.0}
    engine.dispose()
