"""The thaw and bake plan served and shown: the engine in process on the small serving world, the workbench's store
page (the same engine call), and ``POST /bake-plan`` through a real ``bentoml serve``."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from html import escape

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient
from test_serving_support import start_server, world

from forecasting.config import load_settings
from forecasting.source.db import open_source
from planning.plan import run_plan
from planning.workbench.app import create_app
from serving.bakeplan import ready_food
from serving.engine import BadRequest, Engine, NotFound
from serving.lifecycle import ModelWatcher
from serving.schemas import BakePlanRequest
from serving.source import SourceReader


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    w = world(tmp_path_factory)
    db = tmp_path_factory.mktemp("bake") / "source.db"
    shutil.copy(f"{w['root']}/source.db", db)
    s = load_settings(w["config"], environ={})
    s = s.model_copy(update={"source": s.source.model_copy(update={"url": f"sqlite:///{db}"})})
    eng = Engine(s, SourceReader(s.source.url, s.source.tables))
    assert ModelWatcher(eng, s).poll_once(), eng.last_error
    return {"world": w, "settings": s, "engine": eng, "url": f"sqlite:///{db}"}


def test_ready_food_is_the_non_drink_one_piece_food_items(served):
    st = served["engine"].state
    food = ready_food(st.master, served["settings"])
    assert len(food) >= 5 and food["product_id"].is_unique and food["material_id"].is_unique
    products = st.master.products.set_index("product_id")
    assert not products.loc[food["product_id"], "is_drink"].astype(bool).any()
    assert (food["price"] > food["unit_cost"]).all() and (food["unit_cost"] > 0).all()
    bakery = food[food["category"] == "Bakery"]
    assert bakery.empty or (bakery["shelf_hours"] == 8.0).all()


def test_engine_plan_tracks_the_cached_forecast(served):
    eng, st = served["engine"], served["engine"].state
    day = st.fc_first
    plan = eng.bake_plan(BakePlanRequest(store_id=1, date=day))
    assert plan.items and plan.opening == "07:00" and plan.release_times[0] == "07:00"
    assert plan.hourly_basis == "profile" and plan.warnings == []
    sf = st.forecasts[1]
    t = (day - sf.first).days
    for it in plan.items:
        daily = float(sf.mean[np.searchsorted(sf.product_ids, it.product_id), t])
        assert it.daily_mean_pcs == pytest.approx(daily, rel=0.02, abs=0.02)  # opening hours hold the day
        assert it.pieces == sum(r.pieces for r in it.releases)
        assert all(r.time < plan.closing for r in it.releases)
        assert it.releases[0].reason.startswith(("Put out", "Nothing"))
    total_mean = sum(i.daily_mean_pcs for i in plan.items)
    assert 0.7 * total_mean <= plan.pieces <= 1.6 * total_mean + 2 * len(plan.items)
    assert plan == eng.bake_plan(BakePlanRequest(store_id=1, date=day))  # seeded: the same answer twice


def test_engine_refuses_an_unknown_store_and_a_day_without_forecasts(served):
    eng, st = served["engine"], served["engine"].state
    with pytest.raises(NotFound, match="unknown store_id 99"):
        eng.bake_plan(BakePlanRequest(store_id=99, date=st.fc_first))
    with pytest.raises(BadRequest, match="outside what model"):
        eng.bake_plan(BakePlanRequest(store_id=1, date=st.fc_last + timedelta(days=1)))


def test_store_page_shows_the_plan_table(served):
    eng, s = served["engine"], served["settings"]
    day = sorted(eng.state.windows)[0]
    db, schema = open_source(served["url"])
    run_plan(s, db, schema, day, store_ids=[1], reports=False)
    calls = []

    def bake(store_id, d):
        calls.append((store_id, d))
        return eng.bake_plan(BakePlanRequest(store_id=store_id, date=d))

    client = TestClient(create_app(s, db, schema, bake_plan=bake))
    html = client.get(f"/d/{day}/store/1").text
    assert calls == [(1, day)]
    plan = bake(1, day)
    assert "Thaw and bake plan" in html and "id=bake-plan" in html
    top = plan.items[0]
    assert escape(top.name) in html and f"{top.releases[0].pieces} pc" in html and "start by 06:30" in html
    assert html.count("class=bake-row") == sum(len(i.releases) for i in plan.items)
    assert "Expected waste" in html and "Expected lost sales" in html
    offers = [i.sell_down for i in plan.items if i.sell_down is not None]
    assert all(escape(sd.reason.split(":")[0]) in html for sd in offers)
    out_of_range = day + timedelta(days=400)
    # the page for a day without forecasts says why in one line, and still shows the orders
    client2 = TestClient(create_app(s, db, schema, bake_plan=lambda sid, d: bake(sid, out_of_range)))
    assert "No bake plan: date" in client2.get(f"/d/{day}/store/1").text
    db.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``bentoml serve`` (no token: the workbench is open) on a copy of the world's source with a plan for
    store 1 on the first order date (the workbench's store page needs a proposal)."""
    w = world(tmp_path_factory)
    root = tmp_path_factory.mktemp("serve-bake")
    shutil.copy(f"{w['root']}/source.db", root / "source.db")
    url = f"sqlite:///{root / 'source.db'}"
    settings = load_settings(w["config"], environ={})
    day = date.fromisoformat(str(w["data_date"])[:10]) + timedelta(days=1)
    db, schema = open_source(url)
    run_plan(settings, db, schema, day, store_ids=[1], reports=False)
    db.dispose()
    srv = start_server(w["config"], root, REPLENISH__SOURCE__URL=url)
    srv.day = day
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text() or "ValidationError" in srv.log_text(), srv.log_text()[-3000:]


def test_bake_plan_endpoint(server):
    st = server.status()
    day = st["forecast_dates"][0]
    r = server.post("/bake-plan", {"store_id": 2, "date": day})
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-model-version"] == body["model_version"] == st["model_version"]
    assert body["store_id"] == 2 and body["date"] == day and body["items"]
    rel = body["items"][0]["releases"][0]
    assert isinstance(rel["pieces"], int) and {"expected_waste_pcs", "waste_usd", "expected_lost_pcs",
                                               "lost_margin_usd", "reason"} <= rel.keys()
    assert any("coupon" in a for a in body["assumptions"])
    bad = server.post("/bake-plan", {"store_id": 99, "date": day})
    assert bad.status_code == 404 and bad.json()["error"].startswith("unknown store_id 99")
    late = server.post("/bake-plan", {"store_id": 1, "date": "2030-01-01"})
    assert late.status_code == 400 and "outside what model" in late.json()["error"]
    for body in ({"store_id": 1}, {"store_id": 1, "date": "tomorrow"}, {"store_id": 1, "date": day, "x": 1}):
        r = server.post("/bake-plan", body)
        assert r.status_code == 400, (body, r.status_code, r.text)
    assert httpx.post(server.url + "/bake-plan", content=b"{", headers={"content-type": "application/json"},
                      timeout=30).status_code == 400
    spec = httpx.get(server.url + "/docs.json", timeout=30).json()
    assert {"200", "400", "404", "503"} <= set(spec["paths"]["/bake-plan"]["post"]["responses"])


def test_the_served_store_page_shows_the_same_plan(server):
    """The workbench mounted in the API server gets its plan from the server's own engine (one path)."""
    day = str(server.day)
    plan = server.post("/bake-plan", {"store_id": 1, "date": day}).json()
    html = httpx.get(f"{server.url}/workbench/d/{day}/store/1", timeout=60).text
    assert "id=bake-plan" in html and "No bake plan" not in html
    assert html.count("class=bake-row") == sum(len(i["releases"]) for i in plan["items"])
    first = plan["items"][0]
    assert escape(first["name"]) in html and f"{first['releases'][0]['pieces']} pc" in html
