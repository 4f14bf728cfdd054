"""The planners' workbench in a real browser (Playwright driving Debian's Chromium) against a real ``bentoml serve``.

Main journey: sign in, open the overview, open a store, change a quantity with a reason, approve, release, see the
released order through the ordering system's API and in ``t_replenishment_order``, release again and get no
duplicate; plus the role refusals. Skips (saying why) only when Playwright or the browser is not installed.
Set ``REPLENISH_SCREENSHOTS=docs/img`` to refresh the screenshots the planner's guide shows.
"""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from test_serving_support import start_server, world

from forecasting.config import load_settings
from forecasting.source.db import open_source
from planning import lifecycle
from planning.plan import run_plan

CHROMIUM = os.environ.get("REPLENISH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
PLANNER, ORDERING = "planner-token-b1", "ordering-token-c2"


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed ({exc}): pip install -e '.[dev]'")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    return sync_playwright


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    sync_playwright = _browser_or_skip()
    w = world(tmp_path_factory)
    root = tmp_path_factory.mktemp("workbench")
    db = root / "source.db"
    shutil.copy(Path(w["root"]) / "source.db", db)  # the shared world stays as it is
    url = f"sqlite:///{db}"
    settings = load_settings(w["config"], environ={})
    day = date.fromisoformat(str(w["data_date"])[:10]) + timedelta(days=1)
    engine, schema = open_source(url)
    res = run_plan(settings, engine, schema, day, reports=False)
    assert res.written and not res.failures, res.failures
    p = schema["proposals"]
    with engine.begin() as conn:  # earlier proposals (the cache holds one batch): shown beside today's numbers
        rows = [dict(r._mapping) for r in conn.execute(select(p).where(p.c.proposal_date == day))]
        for back, extra in ((7, 1), (1, 0)):
            conn.execute(p.insert(), [{**r, "proposal_date": day - timedelta(days=back), "packs": r["packs"] + extra}
                                      for r in rows])
    srv = start_server(w["config"], root, REPLENISH_DB_URL=url, REPLENISH_PLANNER_TOKEN=PLANNER,
                       REPLENISH_ORDERING_TOKEN=ORDERING)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield {"srv": srv, "day": day, "engine": engine, "schema": schema, "browser": browser}
        browser.close()
    srv.stop()
    engine.dispose()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]


def _shot(page, name: str) -> None:
    out = os.environ.get("REPLENISH_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / name), full_page=False)


def _orders(engine, schema, store: int, day: date) -> list[tuple[int, float]]:
    od = schema["replenishment_orders"]
    lo, hi = lifecycle.order_no(day, store, 0), lifecycle.order_no(day, store, 99999)
    with engine.connect() as conn:
        return [(int(a), float(b)) for a, b in conn.execute(select(od.c.material_id, od.c.qty)
                                                             .where(od.c.order_no.between(lo, hi)))]


def test_main_journey_change_approve_release_once(setup):
    srv, day, engine, schema = setup["srv"], setup["day"], setup["engine"], setup["schema"]
    page = setup["browser"].new_page(viewport={"width": 1280, "height": 1500})
    page.goto(f"{srv.url}/workbench/")
    assert "/workbench/login" in page.url
    page.fill("input[name=user]", "ana")
    page.fill("input[name=token]", PLANNER)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"**/workbench/d/{day}")
    rows = page.locator("#stores tr[data-store]")
    assert rows.count() == 3
    assert "packs" in page.locator(".kpi").first.inner_text()
    _shot(page, "workbench-overview.png")

    page.click("#stores tr[data-store='1'] a")
    page.wait_for_url(f"**/workbench/d/{day}/store/1")
    assert page.locator(".state.draft").count() == 1
    row = page.locator("#lines tr:has(form.inline)").first
    form = row.locator("form.inline").first
    mid = int(row.get_attribute("id")[1:])
    engine_packs = int(row.locator("td").nth(2).inner_text().split()[0])
    new = engine_packs + 2
    form.locator("input[name=packs]").fill(str(new))
    form.locator("button").click()  # no reason: the browser refuses the form
    assert page.locator("[role=status]").count() == 0
    form.locator("input[name=reason]").fill("office party Friday")
    form.locator("button").click()
    page.wait_for_selector("[role=status]")
    assert "office party Friday" in page.locator("[role=status]").inner_text()
    row = page.locator(f"#m{mid}")
    assert row.locator("td.final").inner_text().strip() == str(new)
    assert "office party Friday" in row.inner_text() and str(engine_packs) in row.locator("td").nth(2).inner_text()
    _shot(page, "workbench-store.png")
    bake = page.locator("#bake-plan")  # the thaw and bake plan: fill the shelf up to each release's target
    assert bake.count() == 1 and "shelf to" in bake.inner_text()
    assert "fill the shelf up to" in page.locator("#bake ~ p.small").first.inner_text()
    bake.scroll_into_view_if_needed()
    _shot(page, "workbench-bake.png")

    page.click("#approve")
    page.wait_for_selector(".state.approved")
    page.click("#release")
    page.wait_for_selector(".state.released")
    assert "released:" in page.locator("[role=status]").inner_text()

    feed = httpx.get(f"{srv.url}/workbench/api/orders", params={"store_id": 1, "order_date": str(day)},
                     headers={"Authorization": f"Bearer {ORDERING}"})
    assert feed.status_code == 200, feed.text
    rel = feed.json()["releases"]
    assert len(rel) == 1 and rel[0]["released_by"] == "ana"
    got = {o["material_id"]: o["packs"] for o in rel[0]["orders"]}
    assert got[mid] == new
    stored = _orders(engine, schema, 1, day)
    line = next(o for o in rel[0]["orders"] if o["material_id"] == mid)
    assert len(stored) == len(got) and dict(stored)[mid] == pytest.approx(new * line["pack_size"])

    # release again, from the page's form (a double click, a retry) and through the API: no duplicate
    again = page.request.post(f"{srv.url}/workbench/d/{day}/store/1/release")
    assert again.ok and "already released" in again.text()
    api = httpx.post(f"{srv.url}/workbench/api/proposals/{day}/1/release", headers={"Authorization":
                                                                                   f"Bearer {PLANNER}"})
    assert api.status_code == 200 and api.json()["replayed"]
    assert sorted(_orders(engine, schema, 1, day)) == sorted(stored)
    page.close()


def test_roles_are_refused_each_others_actions(setup):
    srv, day = setup["srv"], setup["day"]
    page = setup["browser"].new_page()
    page.goto(f"{srv.url}/workbench/login")
    page.fill("input[name=user]", "orders-bot")
    page.fill("input[name=token]", ORDERING)
    page.click("button:has-text('Sign in')")
    assert "not a planner token" in page.content()
    page.close()
    ordering = {"Authorization": f"Bearer {ORDERING}"}
    planner = {"Authorization": f"Bearer {PLANNER}"}
    r = httpx.post(f"{srv.url}/workbench/api/proposals/{day}/2/approve", headers=ordering)
    assert r.status_code == 403 and "planners" in r.json()["error"]
    assert httpx.get(f"{srv.url}/workbench/d/{day}", headers=ordering).status_code == 403
    r = httpx.get(f"{srv.url}/workbench/api/orders", params={"since": 0}, headers=planner)
    assert r.status_code == 403 and "ordering system" in r.json()["error"]
    assert httpx.get(f"{srv.url}/workbench/api/orders", params={"since": 0}).status_code == 401
    # the API's own endpoints are untouched by the mount
    assert httpx.get(f"{srv.url}/readyz").status_code == 200
