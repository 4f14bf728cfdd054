"""The ready-food replay through the day (forecasting.evaluation.intraday): exact small days, FIFO, substitution,
common random numbers, and the oracle's plan beating a bad one in expectation."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.evaluation.intraday import (
    DayDraw,
    DayPlan,
    ReplayItem,
    daily_only_plan,
    draw_day,
    like_items,
    release_plan,
    replay_day,
)
from forecasting.inventory.bake import BakeItem

# opening 07:00, closing 15:00, one-hour slots: 8 slots
OPEN, CLOSE, SLOT = 7.0, 15.0, 1.0


def _draw(*rows: list[int]) -> DayDraw:
    d = np.array(rows, dtype=np.int64)
    return DayDraw(d, np.zeros(d.shape))


def test_one_release_shelf_four_hours_exact():
    item = ReplayItem(1, shelf_hours=4.0, unit_cost=1.0, price=3.0)
    out = replay_day([item], DayPlan((7.0,), np.array([[5]])), _draw([1] * 8), OPEN, CLOSE, SLOT)
    # 4 sold 07-11, the 5th piece stale at 11:00, demand 11-15 lost on an empty shelf
    assert out.sold.tolist() == [4]
    assert out.wasted.tolist() == [1]
    assert out.lost.tolist() == [4]
    assert out.stockout_hours.tolist() == [4.0]
    assert out.waste_usd.tolist() == [1.0]
    assert out.lost_margin_usd.tolist() == [8.0]  # 4 units x margin $2
    assert out.total_cost == pytest.approx(9.0)
    assert out.fill_rate == pytest.approx(0.5)


def test_closing_throws_away_and_empty_shelf_counts_without_demand():
    item = ReplayItem(1, shelf_hours=24.0, unit_cost=1.0, price=3.0)
    # a first release at 10:00: 07-10 empty (3 h out, no demand asked); 4 pieces, 1 sold, 3 thrown away at closing
    out = replay_day([item], DayPlan((10.0,), np.array([[4]])), _draw([0, 0, 0, 1, 0, 0, 0, 0]), OPEN, CLOSE, SLOT)
    assert out.stockout_hours.tolist() == [3.0]
    assert out.wasted.tolist() == [3]
    assert out.lost.tolist() == [0]


def test_fifo_sells_the_oldest_fresh_pieces_first():
    item = ReplayItem(1, shelf_hours=4.0, unit_cost=1.0, price=3.0)
    plan = DayPlan((7.0, 9.0), np.array([[3, 3]]))
    # 2 at 09:00 come from the 07:00 batch (1 left, stale at 11:00); 2 at 12:00 from the 09:00 batch (stale 13:00)
    out = replay_day([item], plan, _draw([0, 0, 2, 0, 0, 2, 0, 0]), OPEN, CLOSE, SLOT)
    assert out.sold.tolist() == [4]
    assert out.lost.tolist() == [0]
    assert out.wasted.tolist() == [2]  # newest-first would waste 3 and lose 1
    # plan times given out of order are still sold oldest first
    swapped = replay_day([item], DayPlan((9.0, 7.0), np.array([[3, 3]])), _draw([0, 0, 2, 0, 0, 2, 0, 0]), OPEN,
                         CLOSE, SLOT)
    assert swapped.wasted.tolist() == [2]


def test_substitution_moves_lost_units_only_to_a_like_item_with_stock():
    a = ReplayItem(1, 24.0, 1.0, 3.0, like=1)
    b = ReplayItem(2, 24.0, 1.0, 4.0, like=-1)
    draw = _draw([3, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0])
    out = replay_day([a, b], DayPlan((7.0,), np.array([[0], [2]])), draw, OPEN, CLOSE, SLOT, substitution_share=1.0)
    assert out.substituted.tolist() == [2, 0]
    assert out.sold_as_substitute.tolist() == [0, 2]
    assert out.lost.tolist() == [1, 0]
    assert out.wasted.tolist() == [0, 0]
    # lost margin: 1 unit of a at $2, 2 substituted units at a's margin - b's ($2 - $3)
    assert out.lost_margin_usd.tolist() == [pytest.approx(2.0 - 2.0), 0.0]
    # the like item has nothing: everything is lost
    none = replay_day([a, b], DayPlan((7.0,), np.array([[0], [0]])), draw, OPEN, CLOSE, SLOT, substitution_share=1.0)
    assert none.substituted.tolist() == [0, 0] and none.lost.tolist() == [3, 0]
    # no substitution without a share, and b's own lost demand has no like item to go to
    off = replay_day([a, b], DayPlan((7.0,), np.array([[0], [2]])), draw, OPEN, CLOSE, SLOT, substitution_share=0.0)
    assert off.lost.tolist() == [3, 0] and off.sold_as_substitute.tolist() == [0, 0]
    back = replay_day([b, a], DayPlan((7.0,), np.array([[0], [5]])), _draw([3] + [0] * 7, [0] * 8), OPEN, CLOSE,
                      SLOT, substitution_share=1.0)
    assert back.lost.tolist() == [3, 0]  # b (index 0) has like -1


def test_substitution_share_rounds_with_the_drawn_uniform():
    a = ReplayItem(1, 24.0, 1.0, 3.0, like=1)
    b = ReplayItem(2, 24.0, 1.0, 3.0, like=0)
    d = np.array([[3] + [0] * 7, [0] * 8])
    plan = DayPlan((7.0,), np.array([[0], [10]]))
    low = replay_day([a, b], plan, DayDraw(d, np.zeros(d.shape)), OPEN, CLOSE, SLOT, substitution_share=0.5)
    high = replay_day([a, b], plan, DayDraw(d, np.full(d.shape, 0.99)), OPEN, CLOSE, SLOT, substitution_share=0.5)
    assert low.substituted[0] == 1 and high.substituted[0] == 2  # floor(1.5 + u)


def test_like_items_pick_the_most_popular_other_item_of_the_category():
    assert like_items(["Bakery", "Bakery", "Food", "Bakery"], [1.0, 5.0, 2.0, 3.0]) == [1, 3, -1, 1]


def _items() -> list[BakeItem]:
    morning = {h: (3.0 if h < 11 else 0.5) for h in range(7, 19)}
    late = {h: (0.3 if h < 13 else 2.0) for h in range(7, 19)}
    return [BakeItem(1, "croissant", morning, 0.08, 8.0, 1.2, 3.95),
            BakeItem(2, "sandwich", late, 0.08, 8.0, 2.5, 7.25)]


def test_same_seed_same_draws_for_every_plan():
    means = [it.hourly_mean for it in _items()]
    d1 = draw_day(means, 0.08, 7, 19, 0.25, seed=11)
    d2 = draw_day(means, 0.08, 7, 19, 0.25, seed=11)
    d3 = draw_day(means, 0.08, 7, 19, 0.25, seed=12)
    assert np.array_equal(d1.demand, d2.demand) and np.array_equal(d1.u, d2.u)
    assert not np.array_equal(d1.demand, d3.demand)
    items = [ReplayItem(it.item_id, it.shelf_hours, it.unit_cost, it.price) for it in _items()]
    before = d1.demand.copy()
    a = replay_day(items, daily_only_plan(_items(), 7, 19, n_samples=300), d1, 7, 19, 0.25, 0.5)
    b = replay_day(items, release_plan(_items(), [6.0, 10.5, 14.0], 7, 19, n_samples=300), d1, 7, 19, 0.25, 0.5)
    assert np.array_equal(d1.demand, before)  # the replay does not consume the draw
    assert a.demand.tolist() == b.demand.tolist() == d1.demand.sum(axis=1).tolist()
    for out in (a, b):  # every piece is sold, sold to a like item's customer or thrown away; every unit served or lost
        assert (out.released == out.sold + out.sold_as_substitute + out.wasted).all()
        assert (out.demand == out.sold + out.substituted + out.lost).all()


def test_daily_only_plan_is_one_release_at_opening_covering_the_day():
    plan = daily_only_plan(_items(), 7, 19, n_samples=2000)
    assert plan.times == (7.0,) and plan.pieces.shape == (2, 1)
    daily = [sum(it.hourly_mean.values()) for it in _items()]
    # critical ratios 0.70 and 0.66: the quantity is above the day's mean, not above twice it
    for q, m in zip(plan.pieces[:, 0], daily, strict=True):
        assert m < q < 2 * m


def test_oracle_plan_beats_a_bad_plan_in_expected_cost():
    items = _items()
    ritems = [ReplayItem(it.item_id, it.shelf_hours, it.unit_cost, it.price) for it in items]
    times = [6.0, 10.5, 14.0]
    oracle = release_plan(items, times, 7, 19, n_samples=1000, seed=3)
    bad = DayPlan(oracle.times, np.roll(oracle.pieces, 1, axis=1) * 2)  # wrong times, twice the pieces
    costs = {"oracle": [], "bad": [], "daily": []}
    daily = daily_only_plan(items, 7, 19, n_samples=1000, seed=3)
    for s in range(300):
        d = draw_day([it.hourly_mean for it in items], 0.08, 7, 19, 0.25, seed=s)
        costs["oracle"].append(replay_day(ritems, oracle, d, 7, 19, 0.25).total_cost)
        costs["bad"].append(replay_day(ritems, bad, d, 7, 19, 0.25).total_cost)
        costs["daily"].append(replay_day(ritems, daily, d, 7, 19, 0.25).total_cost)
    assert np.mean(costs["oracle"]) < np.mean(costs["bad"])
    # the morning croissant's pieces go stale at 15:00 when all put out at opening: releasing beats it
    assert np.mean(costs["oracle"]) < np.mean(costs["daily"])


def test_top_up_fills_to_the_target_counting_the_fresh_pieces():
    item = ReplayItem(1, shelf_hours=24.0, unit_cost=1.0, price=3.0)
    plan = DayPlan((7.0, 11.0), np.array([[4, 2]]), targets=np.array([[4, 4]]))
    # a slow morning (1 sold by 11:00): 3 still fresh, so 11:00 puts out 1, not the planned 2
    slow = replay_day([item], plan, _draw([1, 0, 0, 0, 1, 1, 0, 0]), OPEN, CLOSE, SLOT)
    assert slow.released.tolist() == [5] and slow.sold.tolist() == [3] and slow.wasted.tolist() == [2]
    # a busy morning (all 4 gone by 10:00): the shelf is filled back to 4
    busy = replay_day([item], plan, _draw([2, 2, 0, 0, 1, 1, 0, 0]), OPEN, CLOSE, SLOT)
    assert busy.released.tolist() == [8] and busy.sold.tolist() == [6] and busy.wasted.tolist() == [2]
    # a stale piece is not counted: with a 3-hour shelf the 07:00 pieces are gone by 10:00, 11:00 puts out 4
    short = ReplayItem(1, shelf_hours=3.0, unit_cost=1.0, price=3.0)
    out = replay_day([short], plan, _draw([1, 0, 0, 0, 1, 1, 0, 0]), OPEN, CLOSE, SLOT)
    assert out.released.tolist() == [8] and out.wasted.tolist() == [5]
    fixed = replay_day([item], DayPlan(plan.times, plan.pieces), _draw([1, 0, 0, 0, 1, 1, 0, 0]), OPEN, CLOSE, SLOT)
    assert fixed.released.tolist() == [6] and fixed.wasted.tolist() == [3]


def test_top_up_plan_beats_the_same_plan_put_out_fixed():
    """The replay applies the rule the plan tells the store: filling up to the targets costs less in expectation than
    putting out the planned pieces whatever the shelf holds (the plan's own paths say the same)."""
    items = _items()
    ritems = [ReplayItem(it.item_id, it.shelf_hours, it.unit_cost, it.price) for it in items]
    top = release_plan(items, [6.0, 10.5, 14.0], 7, 19, n_samples=1000, seed=3)
    fixed = release_plan(items, [6.0, 10.5, 14.0], 7, 19, n_samples=1000, seed=3, rule="fixed")
    assert top.targets is not None and fixed.targets is None
    cost = {"top": [], "fixed": []}
    for s in range(300):
        d = draw_day([it.hourly_mean for it in items], 0.08, 7, 19, 0.25, seed=s)
        cost["top"].append(replay_day(ritems, top, d, 7, 19, 0.25).total_cost)
        cost["fixed"].append(replay_day(ritems, fixed, d, 7, 19, 0.25).total_cost)
    assert np.mean(cost["top"]) < np.mean(cost["fixed"])


def test_demand_shape_is_checked():
    with pytest.raises(ValueError, match="shape"):
        replay_day([ReplayItem(1, 4.0, 1.0, 3.0)], DayPlan((7.0,), np.array([[1]])), _draw([1, 1]), OPEN, CLOSE,
                   SLOT)


def test_targets_read_the_paired_ratios():
    from planning.intraday import targets

    def pol(fill: float) -> dict:
        return {"fill_rate": fill}

    def ratio(m: float) -> dict:
        return {"ratio": {"mean": m, "lo": m - 0.01, "hi": m + 0.01}}

    rep = {"policies": {"daily_only": pol(0.80), "intraday": pol(0.81), "oracle": pol(0.85)},
           "paired": {"intraday_vs_daily_only": {"wasted": ratio(0.65), "stockout_hours": ratio(0.85),
                                                 "total_cost": ratio(0.95),
                                                 "fill_rate": {"difference": {"mean": 0.01, "lo": 0.0, "hi": 0.02}}}}}
    met = {t["target"]: t["met"] for t in targets(rep)}
    assert met == {"waste (pieces) <= 0.7 x daily-only": True, "stockout hours <= 0.7 x daily-only": False,
                   "fill rate >= daily-only": True, "total cost <= daily-only": True}
    rep["policies"]["intraday"] = pol(0.79)
    assert not {t["target"]: t["met"] for t in targets(rep)}["fill rate >= daily-only"]
