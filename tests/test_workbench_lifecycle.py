"""The proposal lifecycle and the workbench's JSON API on the small generated world (SQLite, in process).

Overrides append-only (latest counts, withdrawable, refused on a non-order day), approve / reopen / cancel, a
re-plan that never rewrites an approved line, release into ``t_replenishment_order`` (idempotent: same key replays,
same key with another body is a 409), the ordering system's feed (by store and date, or since a cursor), roles.
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from test_plan_world import SmallWorld, small_world

from forecasting.source.db import open_source
from planning import lifecycle
from planning.plan import run_plan
from planning.workbench.app import create_app
from planning.writeback import read_proposals

D = date(2025, 12, 1)
PLANNER, ORDERING = "planner-secret-1", "ordering-secret-2"


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


@pytest.fixture
def src(world, tmp_path):
    """A planned copy of the world's source (each test mutates its own)."""
    db = tmp_path / "source.db"
    shutil.copy(world.root / "source.db", db)
    engine, schema = open_source(f"sqlite:///{db}")
    run_plan(world.settings, engine, schema, D, reports=False)
    yield engine, schema
    engine.dispose()


@pytest.fixture
def client(world, src, monkeypatch):
    monkeypatch.setenv("REPLENISH_PLANNER_TOKEN", PLANNER)
    monkeypatch.setenv("REPLENISH_ORDERING_TOKEN", ORDERING)
    app = Starlette(routes=[Mount("/workbench", create_app(world.settings, *src))])
    return TestClient(app)


def _h(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def _lines(engine, schema, store: int):
    return read_proposals(engine, schema, D, [store]).set_index("material_id")


def _orderable(engine, schema, store: int) -> list[int]:
    df = _lines(engine, schema, store)
    ok = [m for m, e in df["explanation"].items() if json.loads(e)["is_order_day"]]
    return sorted(ok, key=lambda m: -int(df.loc[m, "packs"]))


def _not_orderable(engine, schema, store: int) -> int | None:
    df = _lines(engine, schema, store)
    return next((m for m, e in df["explanation"].items() if not json.loads(e)["is_order_day"]), None)


def test_overrides_append_latest_counts_and_withdraw_restores_the_previous(src):
    engine, schema = src
    mid = _orderable(engine, schema, 1)[0]
    assert lifecycle.override(engine, schema, D, 1, mid, 5, "promo", "ana") == 1
    assert lifecycle.override(engine, schema, D, 1, mid, 7, "event at the office", "bo") == 1
    assert lifecycle.override(engine, schema, D, 1, mid, 7, "event at the office", "bo") == 0  # same: not again
    hist = lifecycle.override_history(engine, schema, D, 1, mid)
    assert [(h["packs"], h["reason"], h["created_by"]) for h in hist] == [(5, "promo", "ana"),
                                                                          (7, "event at the office", "bo")]
    line = _lines(engine, schema, 1).loc[mid]
    assert (line["planner_qty"], line["override_reason"], line["overridden_by"]) == (7.0, "event at the office", "bo")
    now = lifecycle.withdraw(engine, schema, D, 1, mid, "bo")
    assert now["packs"] == 5 and _lines(engine, schema, 1).loc[mid, "planner_qty"] == 5.0
    assert lifecycle.withdraw(engine, schema, D, 1, mid, "ana") is None
    assert _lines(engine, schema, 1).loc[mid, "planner_qty"] is None or \
        _lines(engine, schema, 1)["planner_qty"].isna()[mid]
    assert len(lifecycle.override_history(engine, schema, D, 1, mid)) == 2  # nothing deleted: both withdrawn
    with pytest.raises(lifecycle.Missing, match="no override to withdraw"):
        lifecycle.withdraw(engine, schema, D, 1, mid, "ana")
    with pytest.raises(Exception, match="a reason is required"):
        lifecycle.override(engine, schema, D, 1, mid, 3, "  ", "ana")
    other = _not_orderable(engine, schema, 1)
    if other is not None:
        with pytest.raises(lifecycle.Conflict, match="not an order day"):
            lifecycle.override(engine, schema, D, 1, other, 3, "need it", "ana")


def test_replan_rewrites_drafts_only_and_flags_a_changed_approved_line(world, src):
    engine, schema = src
    mids = _orderable(engine, schema, 1)
    lifecycle.override(engine, schema, D, 2, _orderable(engine, schema, 2)[0], 9, "kept on a draft", "ana")
    lifecycle.approve(engine, schema, D, 1, "ana")
    p = schema["proposals"]
    with engine.begin() as conn:  # the approved line was planned with another engine number than today's
        conn.execute(p.update().where(p.c.proposal_date == D, p.c.store_id == 1, p.c.material_id == mids[0])
                     .values(packs=p.c.packs + 3))
    before = _lines(engine, schema, 1)
    res = run_plan(world.settings, engine, schema, D, store_ids=[1, 2], reports=False)
    after = _lines(engine, schema, 1)
    assert res.written["held"] == len(before) and res.written["held_changed"] == 1
    assert (after["packs"] == before["packs"]).all() and (after["status"] == "approved").all()
    assert after.loc[mids[0], "replan_packs"] == before.loc[mids[0], "packs"] - 3
    assert after.drop(mids[0])["replan_packs"].isna().all()
    assert _lines(engine, schema, 2)["planner_qty"].max() == 9.0  # the draft store was rewritten, override kept
    with pytest.raises(lifecycle.Conflict, match="reopen the store"):
        lifecycle.override(engine, schema, D, 1, mids[0], 1, "too late", "ana")
    with engine.begin() as conn:  # a material the approved store did not have when it was signed off
        conn.execute(p.delete().where(p.c.proposal_date == D, p.c.store_id == 1, p.c.material_id == mids[1]))
    res = run_plan(world.settings, engine, schema, D, store_ids=[1], reports=False)
    assert [(s, m) for s, m, _ in res.written["held_new"]] == [(1, mids[1])]  # not added as a lone draft line
    assert mids[1] not in _lines(engine, schema, 1).index
    assert lifecycle.reopen(engine, schema, D, 1, "ana")["status"] == "draft"
    run_plan(world.settings, engine, schema, D, store_ids=[1], reports=False)
    lines = _lines(engine, schema, 1)
    assert lines["replan_packs"].isna().all()  # a draft takes the engine's number again
    assert mids[1] in lines.index and (lines["status"] == "draft").all()  # and the new line with it


def test_release_writes_final_quantities_once_and_the_ordering_system_reads_them(client, src):
    engine, schema = src
    mid = _orderable(engine, schema, 1)[0]
    r = client.post(f"/workbench/api/proposals/{D}/1/release", headers=_h(PLANNER))
    assert r.status_code == 409 and "only an approved proposal" in r.json()["error"]
    r = client.post(f"/workbench/api/proposals/{D}/1/override", headers=_h(PLANNER, **{"X-User": "ana"}),
                    json={"material_id": mid, "packs": 4, "reason": "school event"})
    assert r.status_code == 200 and r.json() == {"recorded": 1}
    assert client.post(f"/workbench/api/proposals/{D}/1/approve", headers=_h(PLANNER)).json()["status"] == "approved"
    r = client.post(f"/workbench/api/proposals/{D}/1/release", headers=_h(PLANNER, **{"Idempotency-Key": "k-1"}),
                    json={"note": "morning run"})
    assert r.status_code == 201, r.text
    rel = r.json()
    finals = {int(m): lifecycle.final_packs(x.packs, x.planner_qty) for m, x in _lines(engine, schema, 1).iterrows()}
    want = {m: n for m, n in finals.items() if n > 0}
    assert {o["material_id"]: o["packs"] for o in rel["orders"]} == want and want[mid] == 4
    assert rel["n_orders"] == len(want) and rel["packs"] == sum(want.values())
    od = schema["replenishment_orders"]
    count = select(func.count()).select_from(od).where(od.c.store_id == 1, od.c.ordered_on == D,
                                                         od.c.status == "open")
    with engine.connect() as conn:
        n_orders = conn.execute(count).scalar()
    assert n_orders == len(want)
    # retries: same key and body replays; no key (natural key) replays; same key, other body: 409
    again = client.post(f"/workbench/api/proposals/{D}/1/release", headers=_h(PLANNER, **{"Idempotency-Key": "k-1"}),
                        json={"note": "morning run"})
    assert again.status_code == 200 and again.json()["replayed"] and again.json()["release_id"] == rel["release_id"]
    assert client.post(f"/workbench/api/proposals/{D}/1/release", headers=_h(PLANNER)).status_code == 200
    clash = client.post(f"/workbench/api/proposals/{D}/1/release", headers=_h(PLANNER, **{"Idempotency-Key": "k-1"}),
                        json={"note": "another"})
    assert clash.status_code == 409 and "another body" in clash.json()["error"]
    with engine.connect() as conn:
        assert conn.execute(count).scalar() == n_orders
    # the released proposal is frozen
    r = client.post(f"/workbench/api/proposals/{D}/1/override", headers=_h(PLANNER),
                    json={"material_id": mid, "packs": 1, "reason": "late"})
    assert r.status_code == 409 and "released" in r.json()["error"]
    # the ordering system: by store and date, and since a cursor
    feed = client.get(f"/workbench/api/orders?store_id=1&order_date={D}", headers=_h(ORDERING)).json()
    assert [x["release_id"] for x in feed["releases"]] == [rel["release_id"]]
    assert {o["material_id"]: o["packs"] for o in feed["releases"][0]["orders"]} == want
    first = client.get("/workbench/api/orders?since=0", headers=_h(ORDERING)).json()
    assert first["cursor"] == rel["release_id"]
    assert client.get(f"/workbench/api/orders?since={first['cursor']}", headers=_h(ORDERING)).json()["releases"] == []
    assert client.get("/workbench/api/orders", headers=_h(ORDERING)).status_code == 400
    assert client.get("/workbench/api/orders?since=x", headers=_h(ORDERING)).status_code == 400


def test_roles_cannot_do_each_others_actions(client):
    assert client.get("/workbench/api/orders?since=0", headers=_h(PLANNER)).status_code == 403
    r = client.post(f"/workbench/api/proposals/{D}/1/approve", headers=_h(ORDERING))
    assert r.status_code == 403 and "planner" in r.json()["error"]
    assert client.post(f"/workbench/api/proposals/{D}/1/approve").status_code == 401
    assert client.get("/workbench/api/orders?since=0", headers=_h("wrong")).status_code == 401
    page = client.get(f"/workbench/d/{D}", follow_redirects=False)
    assert page.status_code == 303 and "/workbench/login" in page.headers["location"]
    assert client.get(f"/workbench/d/{D}", headers=_h(ORDERING)).status_code == 403
    r = client.post("/workbench/login", data={"user": "ana", "token": ORDERING, "next": "/workbench/"})
    assert r.status_code == 403 and "not a planner token" in r.text


def test_bad_requests_are_4xx_with_one_line(client):
    assert client.post(f"/workbench/api/proposals/{D}/1/override", headers=_h(PLANNER),
                       content=b"{not json").status_code == 400
    r = client.post(f"/workbench/api/proposals/{D}/1/override", headers=_h(PLANNER),
                    json={"material_id": 1, "packs": -2, "reason": "x"})
    assert r.status_code == 400 and "packs" in r.json()["error"]
    r = client.post("/workbench/api/proposals/2025-11-01/1/approve", headers=_h(PLANNER))
    assert r.status_code == 404 and "no proposal" in r.json()["error"]
    assert client.post("/workbench/api/proposals/2025-13-01/1/approve", headers=_h(PLANNER)).status_code == 400
