"""The batched replay (recipes, hourly stockouts, conservation) and ``replenish simulate`` on the small world."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
import yaml
from sqlalchemy import insert
from test_plan_world import SmallWorld, run_cli, small_world

from forecasting.config import Settings, load_settings
from forecasting.evaluation.simulation import DeliveryRisk, MaterialCosts, Recipes, replay, stockout_hours
from forecasting.inventory.schedule import DeliverySchedule
from forecasting.source.db import open_source
from planning.simulate import paired, run_simulation, summary_lines
from planning.writeback import ensure_table

MON = date(2025, 3, 3)
DAILY = DeliverySchedule.from_supplier("daily", "23:00", 1)


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


def _never(state):
    return np.zeros(len(state.store_ids))


def test_recipes_a_missing_cup_blocks_the_latte_and_spares_its_milk():
    # one store, one product (latte: 1 cup + 0.2 L milk), 10 lattes a day; 5 cups and plenty of milk
    units = np.full((1, 1, 2), 10.0)
    qty = np.array([[1.0, 0.2]])  # (P=1, n=2)
    demand = units[0, 0][None, :] * qty.T  # material need (2, D)
    costs = [MaterialCosts(0.1, 0.5), MaterialCosts(1.0, 3.0)]
    r = replay([MON, MON + timedelta(days=1)], np.array([1, 1]), np.array([10, 11]), demand, _never, [DAILY] * 2,
               np.array([0, 0]), np.array([5.0, 100.0]), costs, recipes=Recipes(np.array([0, 0]), units, qty))
    assert r.demand == 20.0 and r.sold == 5.0 and r.fill_rate == pytest.approx(0.25)
    d = r.daily.set_index(["material_id", "date"])
    assert d.loc[(11, MON), "sold"] == pytest.approx(1.0)  # only 5 lattes used milk
    assert d.loc[(11, MON), "lost"] == pytest.approx(1.0)  # the other 5 lattes' milk counts as lost
    assert d.loc[(10, MON), "own_fill"] == pytest.approx(0.5) and d.loc[(11, MON), "own_fill"] == 1.0


def test_stockout_hours_follow_the_hourly_profile():
    shares = np.zeros((1, 1, 24))
    shares[0, 0, 8:12] = [0.1, 0.4, 0.3, 0.2]  # open 8-12
    # 30% of the day's demand served: runs out half-way through hour 9 (cum 0.1 -> 0.5), then 2 more hours
    h = stockout_hours(np.array([[3.0]]), np.array([[10.0]]), shares)
    assert h[0, 0] == pytest.approx(0.5 + 2.0)
    assert stockout_hours(np.array([[5.0]]), np.array([[10.0]]), shares)[0, 0] == pytest.approx(2.0)
    assert stockout_hours(np.array([[10.0]]), np.array([[10.0]]), shares)[0, 0] == 0.0


def test_replay_conserves_stock_and_expires_fifo():
    rng = np.random.default_rng(1)
    days = [MON + timedelta(days=k) for k in range(30)]
    demand = rng.poisson([[4.0], [9.0]], size=(2, 30)).astype(float)

    def up_to(state):
        return np.maximum(np.array([12.0, 30.0]) - state.on_hand - state.on_order, 0.0)

    costs = [MaterialCosts(1.0, 2.0), MaterialCosts(1.0, 2.0)]
    r = replay(days, np.array([1, 1]), np.array([1, 2]), demand, up_to, [DAILY] * 2, np.array([2, 0]),
               np.array([5.0, 5.0]), costs, hour_shares=np.full((2, 30, 24), 1 / 24))
    d = r.daily
    for _mid, g in d.groupby("material_id"):
        start = 5.0
        assert start + g["received"].sum() - g["sold"].sum() - g["wasted"].sum() == pytest.approx(
            g["end_on_hand"].iloc[-1])
        assert (g["sold"] <= g["demand"] + 1e-9).all()
    assert d.loc[d["material_id"] == 2, "wasted"].sum() == 0.0  # shelf-stable never expires
    assert r.stockout_hours == pytest.approx(d["stockout_hours"].sum()) and 0.0 < r.fill_rate < 1.0


def _seeds(settings: Settings, n: int) -> Settings:
    """``settings`` with ``n`` demand seeds: the multi-seed protocol with fewer replays (the default's 5 cost time)."""
    sim = settings.planning.simulation.model_copy(update={"seeds": n})
    return settings.model_copy(update={"planning": settings.planning.model_copy(update={"simulation": sim})})


def test_simulate_compares_all_policies_on_the_small_world(world):
    assert load_settings(environ={}).planning.simulation.seeds >= 5  # what a real replay averages over
    engine, schema = open_source(world.db_url)
    res = run_simulation(_seeds(world.settings, 3), engine, schema, date(2025, 11, 24), date(2025, 11, 30))
    assert set(res["policies"]) == {"ours", "incumbent", "seasonal_naive", "oracle"}
    assert res["period"]["days"] == 7 and res["period"]["demand"] == "sampled latent truth"
    for m in res["policies"].values():
        assert 0.5 < m["fill_rate"] <= 1.0 and 0.0 <= m["waste_pct"] < 0.5 and m["stockout_hours"] >= 0
        assert m["total_cost"] == pytest.approx(m["holding_cost"] + m["waste_cost"] + m["lost_margin_cost"], abs=0.05)
    p = res["policies"]
    assert p["oracle"]["demand_units"] == p["incumbent"]["demand_units"]  # same realised demand for everyone
    check = p["ours"]["calibration_check"]  # ours' window calibration is fitted before the period and reported
    assert 0.0 <= check["store_dispersion"] <= 0.5 and 0.0 < check["coverage_0.95_raw"] <= 1.0
    cal = p["ours"]["calibration"]  # per-product factors within the configured bounds
    assert cal["windows"] > 0 and 0.7 <= cal["factor_range"][0] <= cal["factor_range"][1] <= 1.5
    assert "overrides" not in res
    # several demand seeds, the same draws for every policy, compared paired with 95% intervals
    proto = res["protocol"]
    seeds = proto["demand_seeds"]
    assert len(seeds) == 3
    assert proto["calibration_days"][1] < res["period"]["start"]  # calibrated before the reported period
    d = proto["deliveries"]
    assert d["orders"] > 100 and 0.005 < d["late_rate"] < 0.1 and 0.005 < d["short_rate"] < 0.1
    inc = p["incumbent"]
    assert [r["seed"] for r in inc["by_seed"]] == seeds
    assert len({r["demand_units"] for r in inc["by_seed"]}) == len(seeds)  # each seed its own demand draw
    assert [r["demand_units"] for r in inc["by_seed"]] == [r["demand_units"] for r in p["ours"]["by_seed"]]
    lo, hi = p["ours"]["ci95"]["total_cost"]
    assert lo <= p["ours"]["total_cost"] <= hi
    pair = res["paired"]["ours_vs_incumbent"]["total_cost"]
    assert pair["difference"]["lo"] <= pair["difference"]["mean"] <= pair["difference"]["hi"]
    assert pair["difference"]["mean"] == pytest.approx(p["ours"]["total_cost"] - inc["total_cost"], abs=0.05)
    json.dumps(res)
    text = "\n".join(summary_lines(res))  # what `replenish simulate` prints: means, intervals, paired comparisons
    assert f"means over {len(seeds)} demand seeds" in text
    assert f"${p['ours']['total_cost']:,.0f} (${lo:,.0f}..${hi:,.0f}) total cost" in text
    assert "ours against incumbent, seed by seed" in text and "ours against oracle" in text
    classes = {c for r in inc["by_seed"] for c in r["by_class"]}  # where the stockout hours come from
    assert classes and sum(v["stockout_hours"] for v in inc["by_seed"][0]["by_class"].values()) == pytest.approx(
        inc["by_seed"][0]["stockout_hours"], abs=1.0)
    by_store = inc["by_seed"][0]["stockout_hours_by_store"]
    assert len(by_store) == res["period"]["stores"] and sum(by_store.values()) == pytest.approx(
        inc["by_seed"][0]["stockout_hours"], abs=1.0)


def test_summary_lines_say_each_figure_with_its_interval_and_the_paired_comparison():
    def run(seed, fill, hours, waste, cost):
        return {"seed": seed, "fill_rate": fill, "cycle_service_level": 0.9, "stockout_hours": hours,
                "waste_pct": waste, "days_of_cover": 5.0, "total_cost": cost}

    ours = [run(1, 0.98, 100.0, 0.04, 1000.0), run(2, 0.99, 120.0, 0.05, 1100.0)]
    inc = [run(1, 0.96, 200.0, 0.06, 2000.0), run(2, 0.96, 260.0, 0.07, 2300.0)]
    pols = {"ours": {"by_seed": ours, "fill_rate": 0.985, "cycle_service_level": 0.9, "stockout_hours": 110.0,
                     "waste_pct": 0.045, "days_of_cover": 5.0, "total_cost": 1050.0,
                     "ci95": {"fill_rate": [0.92, 1.0], "stockout_hours": [-17.0, 237.0]}},
            "incumbent": {"by_seed": inc, "fill_rate": 0.96, "cycle_service_level": 0.9, "stockout_hours": 230.0,
                          "waste_pct": 0.065, "days_of_cover": 5.0, "total_cost": 2150.0}}
    rep = {"period": {"start": "2025-01-01", "end": "2025-01-07", "days": 7, "stores": 2, "series": 1200,
                      "demand": "sampled latent truth"}, "protocol": {"demand_seeds": [1, 2]},
           "policies": pols, "paired": paired(pols)}
    lines = summary_lines(rep)
    assert lines[0].startswith("Replay 2025-01-01..2025-01-07: 7 days, 2 stores, 1,200 store x material series")
    assert "means over 2 demand seeds, 95% interval in brackets" in lines[0]
    assert "98.50% (92.00%..100.00%) of product units filled" in lines[1]
    assert "110 h (-17 h..237 h) stockout hours" in lines[1] and "$1,050 total cost" in lines[1]
    assert "of product units filled" in lines[2] and "(" not in lines[2].split(";")[0]  # no interval: none given
    assert lines[3] == "ours against incumbent, seed by seed over 2 seeds (ours - incumbent; ours / incumbent):"
    hours = next(ln for ln in lines if ln.strip().startswith("stockout hours"))
    assert hours.startswith("  stockout hours (store x material): -120 h (") and "; x0.481 (" in hours
    cost = next(ln for ln in lines if ln.strip().startswith("total cost"))
    assert ": -1,100 $ (" in cost


def test_forecasts_kept_in_the_cache_give_the_same_replay(world, tmp_path):
    engine, schema = open_source(world.db_url)
    s = world.settings
    sim = s.planning.simulation.model_copy(update={"forecast_cache": str(tmp_path / "fc"), "seeds": 2})
    s = s.model_copy(update={"planning": s.planning.model_copy(update={"simulation": sim})})
    first, again = (run_simulation(s, engine, schema, date(2025, 11, 24), date(2025, 11, 30), ["ours"])
                    ["policies"]["ours"] for _ in range(2))
    assert first["forecast_cache"]["hit"] is False and again["forecast_cache"] == {**first["forecast_cache"],
                                                                                   "hit": True}
    assert "fit" in first["seconds_detail"] and "fit" not in again["seconds_detail"]  # no model refitted
    keep = ("fill_rate", "stockout_hours", "waste_pct", "total_cost", "orders")
    assert [{k: r[k] for k in keep} for r in again["by_seed"]] == [{k: r[k] for k in keep} for r in first["by_seed"]]
    assert again["calibration"] == first["calibration"] and again["calibration_check"] == first["calibration_check"]
    assert len(list((tmp_path / "fc").glob("ours-*/*/forecasts.parquet"))) == 7  # one forecast per order day


def test_late_and_short_deliveries_hit_every_policy_alike():
    days = [MON + timedelta(days=k) for k in range(4)]
    seen = []

    def once(state):
        seen.append(state.on_order.item())
        return np.array([10.0 if state.t == 0 else 0.0])

    risk = DeliveryRisk(late=np.ones((4, 1), dtype=bool), received_share=np.full((4, 1), 0.5))
    r = replay(days, np.array([1]), np.array([1]), np.zeros((1, 4)), once, [DAILY], np.array([0]), np.array([0.0]),
               [MaterialCosts(1.0, 2.0)], deliveries=risk)
    got = r.daily.set_index("date")["received"]
    assert got[MON + timedelta(days=1)] == 0.0 and got[MON + timedelta(days=2)] == 5.0  # a day late, half of it
    assert seen == [0.0, 10.0, 0.0, 0.0]  # on order in full until received
    a, b = (DeliveryRisk.draw(300, 60, 0.03, 0.03, (0.5, 0.9), seed=5) for _ in range(2))
    assert (a.late == b.late).all() and (a.received_share == b.received_share).all()
    assert 0.02 < a.late.mean() < 0.04 and 0.5 <= a.received_share.min() and (a.received_share < 1).mean() < 0.04


def test_simulate_cli_json_with_overrides_value_added(world, tmp_path):
    import shutil

    db = tmp_path / "source.db"
    shutil.copy(world.root / "source.db", db)
    url = f"sqlite:///{db}"
    engine, schema = open_source(url)
    ensure_table(engine, schema)
    with engine.begin() as conn:  # a planner doubled the engine's 2 packs of material 1 at store 1
        conn.execute(insert(schema["proposals"]), [{
            "proposal_date": date(2025, 11, 25), "store_id": 1, "material_id": 1, "qty": 2000.0, "packs": 2,
            "pack_size": 1000.0, "delivery_date": date(2025, 11, 28), "needs_review": False, "reason_codes": "",
            "explanation": json.dumps({"next_delivery_date": "2025-12-02", "inventory_position": 1500.0}),
            "model_version": "v1", "data_date": date(2025, 11, 24), "created_at": date(2025, 11, 25),
            "planner_qty": 4.0, "override_reason": "event"}])
    chart = tmp_path / "chart.png"
    config = tmp_path / "config.yaml"  # the world's configuration with two demand seeds (fewer replays)
    cfg = yaml.safe_load(world.config.read_text())
    cfg["planning"]["simulation"]["seeds"] = 2
    config.write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli("simulate", "--start", "2025-11-20", "--end", "2025-11-30", "--policy", "incumbent",
                             "--policy", "oracle", "--db", url, "--config", str(config), "--chart", str(chart),
                             "--json")
    assert code == 0, err
    res = json.loads(out)
    assert set(res["policies"]) == {"incumbent", "oracle"}
    assert res["overrides"]["overrides"] == 1 and res["overrides"]["better"] + res["overrides"]["worse"] <= 1
    assert chart.stat().st_size > 10_000
    code, _, err = run_cli("simulate", "--policy", "magic", "--db", url, "--config", str(world.config))
    assert code == 2 and "choose from" in err
    code, _, err = run_cli("simulate", "--start", "2025-11-30", "--end", "2025-11-01", "--db", url, "--config",
                           str(world.config))
    assert code == 2 and "is after" in err


def test_replay_noise_is_the_sources_own(tmp_path):
    """``planning.simulation.truth_dispersion: null`` reads the source's ``truth_nb_alpha`` (a realistic history is
    noisier than the default); a configured value wins; a source without it gets 1/12."""
    from forecasting.source.db import make_engine
    from forecasting.source.schema import build_schema
    from planning.inputs import DEFAULT_TRUTH_DISPERSION, with_truth_dispersion

    schema = build_schema()
    engine = make_engine(f"sqlite:///{tmp_path / 'src.db'}")
    schema.metadata.create_all(engine)
    s = load_settings(environ={})
    assert s.planning.simulation.truth_dispersion is None
    got = with_truth_dispersion(s, engine, schema).planning.simulation.truth_dispersion
    assert got == pytest.approx(DEFAULT_TRUTH_DISPERSION)
    with engine.begin() as conn:
        conn.execute(insert(schema["meta"]).values(key="truth_nb_alpha", value="0.105"))
    assert with_truth_dispersion(s, engine, schema).planning.simulation.truth_dispersion == pytest.approx(0.105)
    fixed = load_settings(environ={"REPLENISH__PLANNING__SIMULATION__TRUTH_DISPERSION": "0.2"})
    assert with_truth_dispersion(fixed, engine, schema).planning.simulation.truth_dispersion == pytest.approx(0.2)
