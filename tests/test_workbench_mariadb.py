"""Release to ordering against the real MariaDB: concurrent releases write one set of orders, and a process killed
(SIGKILL) between the proposal update and the order insert leaves neither."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from test_plan import _copy_source
from test_plan_world import SmallWorld, small_world

from forecasting.source.db import open_source
from planning import lifecycle
from planning.plan import run_plan

D = date(2025, 12, 1)
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.mysql


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


@pytest.fixture
def approved(world, mysql_url):
    """A scratch MariaDB source planned for D, store 1 approved."""
    _copy_source(world.db_url, mysql_url)
    engine, schema = open_source(mysql_url)
    run_plan(world.settings, engine, schema, D, store_ids=[1, 2], reports=False)
    lifecycle.approve(engine, schema, D, 1, "ana")
    yield mysql_url, engine, schema
    engine.dispose()


def _counts(engine, schema) -> tuple[int, int, str]:
    od, r, s = schema["replenishment_orders"], schema["releases"], schema["proposal_states"]
    lo, hi = lifecycle.order_no(D, 1, 0), lifecycle.order_no(D, 1, 99999)
    with engine.connect() as conn:
        orders = conn.execute(select(func.count()).select_from(od).where(od.c.order_no.between(lo, hi))).scalar()
        releases = conn.execute(select(func.count()).select_from(r)).scalar()
        status = conn.execute(select(s.c.status).where(s.c.proposal_date == D, s.c.store_id == 1)).scalar()
    return int(orders), int(releases), status


def test_two_concurrent_releases_write_one_set_of_orders(approved):
    url, engine, schema = approved
    results: list[dict] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(2)

    def one(name: str) -> None:
        eng, sch = open_source(url)
        try:
            gate.wait()
            # the first one in holds its transaction open a moment, so the second really waits on the lock
            results.append(lifecycle.release(eng, sch, D, 1, name, hook=lambda _s: time.sleep(1.0)))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            eng.dispose()

    threads = [threading.Thread(target=one, args=(n,)) for n in ("ana", "bo")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(r["replayed"] for r in results) == [False, True]
    assert results[0]["release_id"] == results[1]["release_id"]
    orders, releases, status = _counts(engine, schema)
    assert orders == results[0]["n_orders"] > 0 and releases == 1 and status == "released"


def test_a_crash_between_the_proposal_update_and_the_order_insert_leaves_neither(approved):
    url, engine, schema = approved
    script = textwrap.dedent(f"""
        import time
        from datetime import date
        from forecasting.source.db import open_source
        from planning import lifecycle
        engine, schema = open_source({url!r})
        def stop(stage):
            print(stage, flush=True)
            time.sleep(120)
        lifecycle.release(engine, schema, date({D.year}, {D.month}, {D.day}), 1, "crash", hook=stop)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "updated", proc.stderr.read() if proc.poll() is not None else line
        # inside the open transaction the proposal is already marked released; kill -9 now
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    orders, releases, status = _counts(engine, schema)
    assert (orders, releases, status) == (0, 0, "approved")
    p = schema["proposals"]
    with engine.connect() as conn:
        statuses = {r[0] for r in conn.execute(select(p.c.status).where(p.c.proposal_date == D, p.c.store_id == 1))}
    assert statuses == {"approved"}
    rel = lifecycle.release(engine, schema, D, 1, "ana")  # the lock died with the process: a retry goes through
    assert not rel["replayed"] and _counts(engine, schema) == (rel["n_orders"], 1, "released")
