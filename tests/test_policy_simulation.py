"""Policy replay: hand-checked days, conservation of stock, expiry, metrics and costs."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting.errors import DataError
from forecasting.evaluation.simulation import MaterialCosts, SimState, order_up_to_policy, simulate
from forecasting.inventory.schedule import DeliverySchedule

MON = date(2025, 3, 3)
COSTS = {1: MaterialCosts(unit_cost=2.0, lost_margin=5.0, salvage_ratio=0.0)}


def demand(values, material_id: int = 1, store_id: int = 1) -> pd.DataFrame:
    dates = [MON + timedelta(days=k) for k in range(len(values))]
    return pd.DataFrame({"store_id": store_id, "material_id": material_id, "date": dates, "qty": values})


def never(_: SimState) -> float:
    return 0.0


def test_no_orders_sells_out_and_loses_the_rest():
    r = simulate(demand([5, 5, 5, 5]), never, 1, {}, {(1, 1): 12.0}, COSTS, holding_cost_daily_ratio=0.1)
    assert (r.sold, r.lost, r.wasted) == (12.0, 8.0, 0.0)
    assert r.fill_rate == pytest.approx(0.6)
    assert r.cycle_service_level == 0.0 and r.in_stock_day_rate == pytest.approx(0.5)
    assert r.daily["end_on_hand"].tolist() == [7.0, 2.0, 0.0, 0.0]
    assert r.holding_cost == pytest.approx((7 + 2) * 2.0 * 0.1)
    assert r.lost_margin_cost == pytest.approx(8 * 5.0) and r.total_cost == pytest.approx(40 + 1.8)
    assert r.days_of_cover == pytest.approx((9 / 4) / 5)


def test_perishable_stock_expires_first_in_first_out():
    # 10 fresh units with a 2-day shelf life: sold on days 0 and 1, the rest wasted at the end of day 1
    r = simulate(demand([3, 3, 3]), never, 1, {1: 2}, {(1, 1): 10.0}, COSTS)
    assert r.daily["wasted"].tolist() == [0.0, 4.0, 0.0]
    assert (r.sold, r.wasted, r.lost) == (6.0, 4.0, 3.0)
    assert r.waste_pct == pytest.approx(0.4) and r.waste_cost == pytest.approx(8.0)


def test_order_up_to_with_lead_time_and_conservation():
    rng = np.random.default_rng(0)
    vals = rng.poisson(4.0, 60).astype(float)
    r = simulate(demand(vals), order_up_to_policy({1: 14.0}, {1: 6.0}), 2, {}, {(1, 1): 8.0}, COSTS)
    dly = r.daily
    assert r.sold + r.lost == pytest.approx(vals.sum())
    # stock is conserved: start + received = sold + wasted + final stock
    assert 8.0 + dly["received"].sum() == pytest.approx(r.sold + r.wasted + dly["end_on_hand"].iloc[-1])
    assert (dly["ordered"] % 6.0 == 0).all()  # whole packs
    assert r.fill_rate > 0.9 and 0 < r.cycle_service_level <= 1
    assert dly.loc[dly["ordered"] > 0, "date"].min() == MON  # the first order is placed on day 0 ...
    assert dly["received"].iloc[:2].sum() == 0 and dly["received"].iloc[2] > 0  # ... and arrives on day 2


def test_supplier_calendar_decides_arrivals():
    sched = DeliverySchedule.from_supplier("Wed", "12:00", 1)
    r = simulate(demand([1.0] * 7), lambda s: 5.0 if s.day == MON else 0.0, 1, {}, {}, COSTS, schedules={1: sched})
    assert r.daily.set_index("date").loc[MON + timedelta(days=2), "received"] == 5.0  # Mon + 1 -> first Wed


def test_more_stock_trades_lost_sales_for_waste():
    vals = np.random.default_rng(1).poisson(5.0, 90).astype(float)
    lean = simulate(demand(vals), order_up_to_policy({1: 6.0}), 1, {1: 3}, {}, COSTS)
    rich = simulate(demand(vals), order_up_to_policy({1: 16.0}), 1, {1: 3}, {}, COSTS)
    assert rich.fill_rate > lean.fill_rate and rich.waste_pct > lean.waste_pct
    assert rich.days_of_cover > lean.days_of_cover
    assert set(rich.summary()) >= {"fill_rate", "cycle_service_level", "waste_pct", "days_of_cover", "total_cost"}


def test_bad_input():
    with pytest.raises(DataError, match="negative"):
        simulate(demand([-1.0]), never, 1, {}, {}, COSTS)
    with pytest.raises(DataError, match="costs"):
        simulate(demand([1.0], material_id=9), never, 1, {}, {}, COSTS)
