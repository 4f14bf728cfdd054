"""The synthetic world on the small scenario: determinism and the invariants real data would satisfy."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from forecasting.source.db import open_source
from generator import generate
from generator.catalog import load_catalog, load_scenario
from generator.demand import expected_units, sample_hourly
from generator.simulate import material_arrays, simulate
from generator.stats import content_hash
from generator.world import build_world

SMALL = "configs/scenarios/small.yaml"
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('gen') / 'small.db'}"
    engine, schema = open_source(url)
    summary = generate(engine, schema, SMALL, 42)
    return engine, schema, summary, url


def _df(engine, sql: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(sql), conn)


@pytest.fixture(scope="module")
def orders(small_db) -> pd.DataFrame:
    engine = small_db[0]
    df = _df(engine, "SELECT o.order_id, o.store_id, o.status, o.created_at, o.user_id, s.open_date, s.open_hour, "
                     "s.close_hour FROM t_order o JOIN t_store s ON s.store_id = o.store_id")
    utc = pd.to_datetime(df["created_at"]).dt.tz_localize("UTC")
    local = utc.dt.tz_convert(NY)
    df["utc"] = utc
    df["local_date"] = local.dt.date
    df["local_hour"] = local.dt.hour
    return df


def test_same_seed_same_content_different_seed_differs(small_db, tmp_path):
    engine, schema, _, _ = small_db
    again, schema2 = open_source(f"sqlite:///{tmp_path / 'again.db'}")
    generate(again, schema2, SMALL, 42)
    assert content_hash(engine, schema) == content_hash(again, schema2)
    other, schema3 = open_source(f"sqlite:///{tmp_path / 'other.db'}")
    generate(other, schema3, SMALL, 43)
    with other.connect() as c1, engine.connect() as c2:
        q = "SELECT COUNT(*), SUM(pay_amount) FROM t_order"
        assert tuple(c1.execute(text(q)).one()) != tuple(c2.execute(text(q)).one())


def test_no_sales_before_opening_or_outside_hours(orders):
    open_date = pd.to_datetime(orders["open_date"]).dt.date
    assert (orders["local_date"] >= open_date).all()
    assert (orders["local_hour"] >= orders["open_hour"]).all()
    assert (orders["local_hour"] < orders["close_hour"]).all()
    assert orders["local_date"].max() <= dt.date(2025, 11, 30)


def test_closed_on_thanksgiving_low_on_holidays(orders):
    per_day = orders[orders.status == "completed"].groupby("local_date").size()
    assert dt.date(2025, 11, 27) not in per_day.index  # Thanksgiving: closed
    assert per_day.get(dt.date(2025, 11, 28), 0) < per_day.get(dt.date(2025, 11, 20), 0)  # day after: low


def test_dst_change_converts_correctly(orders):
    # store 1 opens at 07:00 local: 11:00 UTC in EDT (before 2025-11-02), 12:00 UTC in EST (from 2025-11-02)
    s1 = orders[orders.store_id == 1]
    for day, utc_hour in ((dt.date(2025, 10, 31), 11), (dt.date(2025, 11, 2), 12), (dt.date(2025, 11, 3), 12)):
        first = s1[s1.local_date == day]["utc"].min()
        assert first.hour >= utc_hour and first.hour <= utc_hour + 1, (day, first)


def test_weekdays_far_above_weekends(orders):
    done = orders[orders.status == "completed"]
    per_day = done.groupby("local_date").size()
    wd = np.array([d.weekday() for d in per_day.index])
    last = per_day.index >= dt.date(2025, 11, 3)
    assert per_day[(wd < 5) & last].mean() > 1.8 * per_day[(wd >= 5) & last].mean()


def test_products_respect_launch_and_retirement(small_db):
    df = _df(small_db[0], "SELECT o.created_at, p.launch_date, p.retire_date, p.product_name FROM t_order_item i "
                          "JOIN t_order o ON o.order_id = i.order_id JOIN t_product p ON p.product_id = i.product_id "
                          "WHERE p.launch_date IS NOT NULL OR p.retire_date IS NOT NULL")
    local = pd.to_datetime(df["created_at"]).dt.tz_localize("UTC").dt.tz_convert(NY).dt.date
    launch = pd.to_datetime(df["launch_date"]).dt.date
    retire = pd.to_datetime(df["retire_date"]).dt.date
    assert (launch.isna() | (local >= launch)).all()
    assert (retire.isna() | (local <= retire)).all()
    assert "Peppermint Mocha" in set(df["product_name"])  # launched inside the window, and sold


def test_incumbent_forecasts_14_per_store_material_issue_day(small_db):
    engine = small_db[0]
    per = _df(engine, "SELECT store_id, material_id, issued_on, COUNT(*) AS n, MIN(target_date) AS t0 "
                      "FROM t_replenishment_forecast GROUP BY store_id, material_id, issued_on")
    assert (per["n"] == 14).all()
    n_mat = _df(engine, "SELECT COUNT(*) AS n FROM t_material")["n"][0]
    assert n_mat >= 90
    per_issue = per.groupby(["store_id", "issued_on"]).size()
    assert (per_issue == n_mat).all()
    assert set(_df(engine, "SELECT DISTINCT model_version FROM t_replenishment_forecast")["model_version"]) == {
        "irepl-rule-1.0"}


def test_inventory_nonnegative_waste_only_perishable_stockouts_exist(small_db):
    engine = small_db[0]
    snap = _df(engine, "SELECT s.on_hand_qty, s.waste_qty, s.stockout_hours, m.is_perishable FROM "
                       "t_inventory_snapshot s JOIN t_material m ON m.material_id = s.material_id")
    assert (snap["on_hand_qty"] >= 0).all()
    assert (snap.loc[snap.waste_qty > 0, "is_perishable"] == 1).all()
    assert (snap["waste_qty"] > 0).any()
    assert (snap["stockout_hours"] > 0).any()
    assert snap["stockout_hours"].max() <= 14


def test_sold_units_censored_below_latent_demand():
    cat, sc = load_catalog(), load_scenario(SMALL)
    w = build_world(cat, sc, 42)
    mu = expected_units(w)
    latent = sample_hourly(w, mu)
    sim = simulate(w, mu, latent)
    assert (sim.sold <= latent).all()
    lat_d, sold_d = latent.sum(-1), sim.sold.sum(-1)
    censored = ((sold_d < lat_d) & (lat_d > 0)).sum() / (lat_d > 0).sum()
    assert 0.005 < censored < 0.25
    assert (sim.on_hand >= 0).all()
    assert (sim.waste[:, ~material_arrays(w).perishable] == 0).all()


def test_truth_tables_consistent(small_db):
    engine = small_db[0]
    shares = _df(engine, "SELECT store_id, date, SUM(share) AS s FROM t_demand_truth_hourly GROUP BY store_id, date")
    assert np.allclose(shares["s"], 1.0, atol=1e-4)
    truth = _df(engine, "SELECT SUM(expected_qty) AS mu FROM t_demand_truth")["mu"][0]
    sold = _df(engine, "SELECT SUM(i.quantity) AS q FROM t_order_item i JOIN t_order o ON o.order_id = i.order_id "
                       "WHERE o.status = 'completed'")["q"][0]
    assert 0.8 * truth < sold <= 1.05 * truth  # censored sales sit a little below the latent mean


def test_orders_users_coupons_consistent(small_db):
    engine = small_db[0]
    bad = _df(engine, "SELECT COUNT(*) AS n FROM t_user u JOIN (SELECT user_id, MIN(created_at) AS first "
                      "FROM t_order GROUP BY user_id) f ON f.user_id = u.user_id WHERE u.registered_at > f.first")
    assert bad["n"][0] == 0
    pay = _df(engine, "SELECT o.order_id, o.pay_amount, SUM(i.quantity * i.unit_price - i.discount) AS lines "
                      "FROM t_order o JOIN t_order_item i ON i.order_id = o.order_id GROUP BY o.order_id, o.pay_amount")
    assert np.allclose(pay["pay_amount"], pay["lines"], atol=0.011)
    red = _df(engine, "SELECT o.status FROM t_coupon_redemption r JOIN t_order o ON o.order_id = r.order_id")
    assert len(red) > 0 and (red["status"] == "completed").all()
    st = _df(engine, "SELECT status, COUNT(*) AS n FROM t_order GROUP BY status").set_index("status")["n"]
    assert {"completed", "cancelled", "refunded"} <= set(st.index)
    assert st.drop("completed").sum() / st.sum() < 0.06
    meta = dict(_df(engine, "SELECT * FROM t_source_meta").values.tolist())
    assert meta["seed"] == "42" and meta["history_end"] == "2025-11-30" and meta["scenario_name"] == "small"


def test_scenario_events_apply():
    cat = load_catalog()
    w = build_world(cat, load_scenario("configs/scenarios/blizzard.yaml"), 42)
    i = w.day_index(dt.date(2026, 1, 26))
    assert not w.store_open[:, i].any()
    assert ("blizzard" in {k for _, k, _ in w.weather})
    w2 = build_world(cat, load_scenario("configs/scenarios/new_store.yaml"), 42)
    assert w2.S == 11 and w2.store_open[-1, w2.day_index(dt.date(2026, 1, 20))]
    w3 = build_world(cat, load_scenario("configs/scenarios/launch.yaml"), 42)
    p = next(p for p in w3.products if p.name == "Iced Maple Oat Shaken Espresso")
    assert not w3.prod_active[p.product_id - 1, w3.day_index(dt.date(2026, 1, 21))]
    assert w3.prod_active[p.product_id - 1, w3.day_index(dt.date(2026, 1, 22))]


def test_replenishment_orders_some_late_or_short(small_db):
    ro = _df(small_db[0], "SELECT qty, received_qty, expected_delivery, received_on, status "
                          "FROM t_replenishment_order")
    got = ro[ro.status == "received"]
    assert set(ro["status"]) <= {"received", "open"}
    assert (got["received_qty"] < got["qty"]).any()
    assert (pd.to_datetime(got["received_on"]) > pd.to_datetime(got["expected_delivery"])).any()
    assert ro.loc[ro.status == "open", "received_on"].isna().all()


def test_realised_demand_stored_before_censoring(small_db):
    engine = small_db[0]
    t = _df(engine, "SELECT store_id, product_id, date, expected_qty, realised_qty FROM t_demand_truth")
    assert t["realised_qty"].notna().all() and (t["realised_qty"] == t["realised_qty"].round()).all()
    sold = _df(engine, "SELECT SUM(i.quantity) AS q FROM t_order_item i JOIN t_order o ON o.order_id = i.order_id "
                       "WHERE o.status = 'completed'")["q"][0]
    # what would have sold with stock: above what did sell (stockouts), around the latent mean (sampling noise)
    assert sold < t["realised_qty"].sum() and t["realised_qty"].sum() == pytest.approx(t["expected_qty"].sum(), 0.03)
    meta = dict(_df(engine, "SELECT * FROM t_source_meta").values.tolist())
    assert float(meta["truth_nb_alpha"]) == pytest.approx(1 / load_catalog().demand.nb_dispersion)


def test_source_without_realised_column_is_upgraded_and_still_readable(tmp_path):
    from forecasting.source.db import table_columns
    from training.source import load_eval_sources

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine, schema = open_source(url)
    with engine.begin() as conn:  # t_demand_truth as versions before realised_qty created it
        conn.execute(text("CREATE TABLE t_demand_truth (store_id INTEGER NOT NULL, product_id INTEGER NOT NULL, "
                          "date DATE NOT NULL, expected_qty FLOAT NOT NULL, PRIMARY KEY (store_id, product_id, date))"))
        conn.execute(text("INSERT INTO t_demand_truth VALUES (1, 1, '2025-11-01', 3.5)"))
    assert "realised_qty" not in table_columns(engine, schema, "demand_truth")
    old = load_eval_sources(engine, schema)  # readers of an old source: no realised column, no error
    assert old.truth is not None and "realised_qty" not in old.truth and old.truth_alpha is None
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM t_demand_truth"))
    generate(engine, schema, SMALL, 42)
    assert "realised_qty" in table_columns(engine, schema, "demand_truth")
    new = load_eval_sources(engine, schema)
    assert new.truth["realised_qty"].notna().all() and new.truth_alpha == pytest.approx(1 / 12)
    assert new.bom is not None and (new.bom["unit_cost"] > 0).all()
