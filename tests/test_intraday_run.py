"""``planning.intraday.run_intraday`` on the small world: the three plans on the same draws, the rule the plan tells
the store, and the daily-only plan at the same waste weight beside when one is set."""

from __future__ import annotations

import pytest
from test_plan_world import SmallWorld, small_world

from forecasting.source.db import open_source
from planning.intraday import run_intraday, summary_lines


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


def _run(world: SmallWorld, tmp_path, **kw) -> dict:
    settings = world.settings.model_copy(deep=True)
    settings.planning.simulation.forecast_cache = str(tmp_path / "fc")
    engine, schema = open_source(world.db_url)
    return run_intraday(settings, engine, schema, days=3, seeds=2, forecaster="seasonal_naive", **kw)


def test_plans_meet_the_same_demand_and_conserve_pieces(world, tmp_path):
    rep = _run(world, tmp_path)
    p = rep["policies"]
    assert {"daily_only", "intraday", "oracle"} <= set(p)
    assert rep["protocol"]["rule"] == "top_up" and rep["period"]["store_days"] > 0
    assert p["daily_only"]["demand"] == p["intraday"]["demand"] == p["oracle"]["demand"] > 0
    for m in p.values():  # every piece sold, sold to a like item's customer or thrown away
        assert m["released"] == pytest.approx(m["sold"] + m["sold_as_substitute"] + m["wasted"], abs=1e-6)
        assert 0.0 < m["fill_rate"] <= 1.0
    assert {t["target"] for t in rep["targets"]} >= {"fill rate >= daily-only", "total cost <= daily-only"}
    assert any("intraday_vs_daily_only" in line for line in summary_lines(rep))


def test_top_up_and_the_waste_weight_change_what_the_store_does(world, tmp_path):
    fixed = _run(world, tmp_path, rule="fixed", search=False, waste_weight=1.0)
    top = _run(world, tmp_path, rule="top_up", search=True, waste_weight=1.5)
    assert top["protocol"]["search_targets"] and top["protocol"]["waste_weight"] == 1.5
    # the daily-only plan is the same whatever the intraday rule; the same-weight one is reported beside
    assert top["policies"]["daily_only"]["released"] == fixed["policies"]["daily_only"]["released"]
    assert "daily_only_same_weight" in top["policies"] and "daily_only_same_weight" not in fixed["policies"]
    assert top["policies"]["daily_only_same_weight"]["released"] < top["policies"]["daily_only"]["released"]
    assert top["policies"]["intraday"]["released"] != fixed["policies"]["intraday"]["released"]
