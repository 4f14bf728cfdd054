"""Model lifecycle and a down source, against a running server whose source is a scratch MariaDB database.

The champion alias moves (picked up by the registry poll, no restart, no failed request during the switch); a new
model that fails validation is refused while the previous one keeps serving; the source database disappears
(requests carrying inventory still succeed, others get a 503 saying why as soon as the next counts check fails,
within ``serving.inventory_ttl_s``) and comes back (recovery by itself).
"""

from __future__ import annotations

import threading
import uuid
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from test_serving_support import copy_source_to_mysql, start_server, wait_for, world

pytestmark = pytest.mark.mysql


@pytest.fixture(scope="module")
def maria(mysql_server):
    name = f"scratch_serving_{uuid.uuid4().hex[:8]}"
    admin = create_engine(mysql_server)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    yield {"url": f"{mysql_server}/{name}", "name": name, "admin": admin}
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    admin.dispose()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, maria):
    w = world(tmp_path_factory)
    sqlite_url = f"sqlite:///{w['root']}/source.db"
    copy_source_to_mysql(sqlite_url, maria["url"])
    srv = start_server(w["config"], tmp_path_factory.mktemp("serve-life"), REPLENISH_DB_URL=maria["url"],
                       REPLENISH__SERVING__POLL_INTERVAL_S="1", REPLENISH__SERVING__INVENTORY_TTL_S="1")
    yield {"server": srv, "world": w, "sqlite_url": sqlite_url, **maria}
    srv.stop()
    from serving.devworld import promote_alias

    promote_alias(w["root"], 1)  # leave the shared world as the other serving tests expect it


def _with_inventory(status: dict) -> dict:
    return {"store_id": 1, "order_date": status["order_dates"][0],
            "inventory": [{"material_id": 1, "on_hand": 100.0}, {"material_id": 2, "on_hand": 50.0}]}


def test_a_moved_champion_is_served_without_restart_or_failed_request(setup):
    from serving.devworld import register_copy

    srv, w = setup["server"], setup["world"]
    before = srv.status()
    assert before["model_version"] == "v1"
    body = _with_inventory(before)
    old = srv.post("/replenishment", body).json()

    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def traffic() -> None:  # the ordering system keeps calling during the switch
        while not stop.is_set():
            r = srv.post("/replenishment", body)
            seen.append((r.status_code, r.headers.get("x-model-version")))
            stop.wait(0.05)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        label = register_copy(w["root"], w["forecaster"], scale=1.5)
        assert label == "v2"
        wait_for(lambda: srv.status()["model_version"] == "v2", timeout_s=120)
        stop.wait(0.5)
    finally:
        stop.set()
        t.join()
    assert seen and all(code == 200 for code, _ in seen), seen
    assert {v for _, v in seen} <= {"v1", "v2"}
    new = srv.post("/replenishment", body)
    assert new.headers["x-model-version"] == new.json()["model_version"] == "v2"
    means = {ln["material_id"]: ln["demand_mean"] for ln in old["lines"]}
    line = next(ln for ln in new.json()["lines"] if means.get(ln["material_id"], 0) > 0)
    assert line["demand_mean"] == pytest.approx(1.5 * means[line["material_id"]], rel=1e-6)


def test_a_model_that_fails_to_load_or_validate_leaves_the_previous_one_serving(setup):
    from forecasting.source.forecast_cache import write_cache
    from serving.devworld import cached_frame, promote_alias, register_copy

    srv, w = setup["server"], setup["world"]
    assert srv.status()["model_version"] == "v2"
    label = register_copy(w["root"], w["forecaster"], scale=None, promote=False)
    promote_alias(w["root"], label[1:])
    got = wait_for(lambda: (s := srv.status())["last_error"] and label in s["last_error"] and s, timeout_s=60)
    assert "no cached forecasts" in got["last_error"] and got["model_version"] == "v2"

    day = date.fromisoformat(got["data_date"])
    bad = cached_frame(w["root"], "v2", day)
    bad = pd.concat([bad, bad[bad["store_id"] == 1].assign(store_id=999)])  # a store the source does not know
    write_cache(f"{w['root']}/forecasts", bad, label, day)
    got = wait_for(lambda: "rejected" in ((s := srv.status())["last_error"] or "") and s, timeout_s=90)
    assert "999" in got["last_error"] and "still serving v2" in got["last_error"]
    r = srv.post("/replenishment", _with_inventory(got))
    assert r.status_code == 200 and r.json()["model_version"] == "v2"
    promote_alias(w["root"], 2)


def test_source_down_inventory_requests_still_succeed_and_recovery_is_automatic(setup):
    srv = setup["server"]
    status = srv.status()
    plain = {"store_id": 2, "order_date": status["order_dates"][0]}
    assert srv.post("/replenishment", plain).status_code == 200
    with setup["admin"].begin() as conn:
        conn.execute(text(f"DROP DATABASE `{setup['name']}`"))
    try:  # the counts in memory are dropped at the next check (every second here): then 503, never old counts
        r = wait_for(lambda: (r := srv.post("/replenishment", plain)).status_code != 200 and r, timeout_s=20)
        assert r.status_code == 503, r.text
        msg = r.json()["error"]
        assert "unreachable" in msg and "send `inventory`" in msg and "@" not in msg
        assert r.json()["model_version"] == status["model_version"]
        ok = srv.post("/replenishment", _with_inventory(status))
        assert ok.status_code == 200 and ok.json()["inventory_source"] == "request"
        assert srv.post("/forecast", {"store_id": 1, "start_date": status["forecast_dates"][0], "days": 2}
                        ).status_code == 200
        assert srv.post("/replenishment/batch", {"order_date": status["order_dates"][0]}).status_code == 503
        assert srv.status()["source_ok"] is False and "unreachable" in srv.status()["counts_error"]
    finally:
        with setup["admin"].begin() as conn:
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{setup['name']}` CHARACTER SET utf8mb4"))
        copy_source_to_mysql(setup["sqlite_url"], setup["url"])
    back = wait_for(lambda: (r := srv.post("/replenishment", plain)).status_code == 200 and r, timeout_s=30)
    assert back.json()["inventory_source"] == "source"
    assert srv.status()["source_ok"] is True and srv.status()["counts_error"] is None
