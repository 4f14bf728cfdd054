"""The thaw and bake plan's core (``forecasting.inventory.bake``): properties a wrong plan would break."""

from __future__ import annotations

import time

import numpy as np
import pytest

from forecasting.inventory.bake import BakeItem, SellDownSettings, hhmm, parse_hhmm, plan_day

OPEN, CLOSE = 7, 19
RELEASES = [6.0, 10.5, 14.0]
MORNING = {7: 4.0, 8: 5.0, 9: 3.0, 10: 1.5, 11: 1.5, 12: 2.0, 13: 1.5, 14: 1.0, 15: 1.0, 16: 1.0, 17: 0.8, 18: 0.7}


def item(price: float = 3.75, cost: float = 1.10, shelf: float = 8.0, scale: float = 1.0, item_id: int = 1,
         dispersion: float = 0.08) -> BakeItem:
    return BakeItem(item_id, f"item {item_id}", {h: m * scale for h, m in MORNING.items()}, dispersion, shelf, cost,
                    price)


def one(it: BakeItem, **kw):
    kw.setdefault("cover", "next_release")
    return plan_day([it], RELEASES, OPEN, CLOSE, sell_down=kw.pop("sell_down", None), seed=3, **kw).items[0]


def test_whole_pieces_and_no_release_after_closing():
    plan = plan_day([item()], [6.0, 10.5, 14.0, 19.0, 21.5], OPEN, CLOSE, seed=1, cover="next_release")
    assert plan.release_times == RELEASES and plan.dropped_times == [19.0, 21.5]
    rel = plan.items[0].releases
    assert [r.time for r in rel] == RELEASES
    assert all(isinstance(r.pieces, int) and r.pieces >= 0 for r in rel)
    assert all(r.covers_until <= CLOSE for r in rel) and rel[0].start_by == 5.5


def test_a_higher_margin_never_lowers_the_pieces():
    """Over the day (a bigger first release may leave more fresh pieces for the next, but never more than it
    added) and at the first release (the same demand paths at a higher critical ratio)."""
    plans = [one(item(price=p, scale=2.0)) for p in (1.3, 1.6, 2.0, 3.0, 4.5, 7.0, 12.0)]
    totals = [p.pieces for p in plans]
    firsts = [p.releases[0].pieces for p in plans]
    assert totals == sorted(totals) and firsts == sorted(firsts)
    assert totals[-1] > totals[0]  # and it does raise them
    levels = [p.releases[0].service_level for p in plans]
    assert levels == sorted(levels) and levels[0] < levels[-1]


def test_a_shorter_shelf_life_moves_pieces_to_later_releases():
    long, short = one(item(shelf=12.0)), one(item(shelf=3.0))
    late = [sum(r.pieces for r in p.releases[1:]) / max(p.pieces, 1) for p in (long, short)]
    assert late[1] > late[0]
    assert short.releases[0].covers_until == pytest.approx(6.0 + 3.0)  # stale at 09:00, not 10:30
    assert "go stale at 09:00" in short.releases[0].reason


def test_totals_track_the_daily_forecast():
    for scale in (0.5, 2.0, 6.0):
        p = one(item(scale=scale))
        daily = sum(MORNING.values()) * scale
        assert p.daily_mean == pytest.approx(daily, rel=1e-6)
        assert p.expected_sold + p.expected_lost == pytest.approx(daily, rel=0.08)  # demand is sold or lost
        assert 0.8 * daily <= p.pieces <= 1.6 * daily + 3
        # every piece put out sells or goes; pieces are the rounded expected numbers of the top-up rule
        assert p.expected_sold + p.expected_waste == pytest.approx(p.pieces, abs=0.5 * len(p.releases) + 0.01)
        fixed = one(item(scale=scale), rule="fixed")
        assert fixed.expected_sold + fixed.expected_waste == pytest.approx(fixed.pieces, abs=0.01)


def test_pieces_left_fresh_are_counted_against_the_next_release():
    fixed = one(item(shelf=12.0), rule="fixed").releases[1]
    assert fixed.fresh_carried > 0 and "still fresh from earlier" in fixed.reason
    assert abs(fixed.pieces - (fixed.shelf_target - fixed.fresh_carried)) <= 0.51  # whole pieces to the target
    assert f"top it up to {fixed.shelf_target} pc" in fixed.reason
    assert fixed.shelf_target >= fixed.demand_mean  # the target covers more than the usual demand at CR 71%
    later = one(item(shelf=12.0)).releases[1]  # top_up: the action is the shelf level, the pieces its expectation
    assert later.shelf_target == fixed.shelf_target and later.fresh_carried == pytest.approx(fixed.fresh_carried)
    assert f"Fill the shelf up to {later.shelf_target} pc at 10:30" in later.reason
    # E[max(target - fresh, 0)] >= target - E[fresh]: a slow morning leaves more, a busy one less
    assert later.pieces >= later.shelf_target - later.fresh_carried - 0.51


def test_top_up_puts_out_less_after_a_slow_morning_and_wastes_less():
    """The shelf is filled to the target on each demand path: over the plan's own paths the top-up rule throws
    away less and loses no more than putting out fixed pieces."""
    it = item(shelf=12.0, scale=2.0)
    top, fixed = one(it), one(it, rule="fixed")
    assert top.expected_waste < fixed.expected_waste
    assert top.expected_lost <= fixed.expected_lost + 0.05


def test_sell_down_is_offered_only_when_it_pays_and_names_its_numbers():
    busy = item(price=6.0, cost=0.5, scale=3.0, shelf=12.0)  # a wide margin: generous batches, leftovers tonight
    offered = one(busy, sell_down=SellDownSettings(hours_before_close=2.0, discount=0.3, lift=1.0)).sell_down
    assert offered is not None and offered.time == 17.0 and offered.offer
    assert offered.expected_leftover >= 1 and offered.expected_saved >= 1 and offered.effect_usd > 0
    assert "30% off from 17:00" in offered.reason and f"{offered.effect_usd:.2f}" in offered.reason
    steep = one(busy, sell_down=SellDownSettings(discount=0.5, lift=1.0)).sell_down  # the discount eats the gain
    assert steep is not None and not steep.offer and steep.effect_usd < 0 and "No coupon" in steep.reason
    no_lift = one(busy, sell_down=SellDownSettings(discount=0.3, lift=0.0)).sell_down
    assert no_lift is not None and not no_lift.offer and no_lift.expected_saved == 0
    lean = one(item(price=2.0, cost=1.5), sell_down=SellDownSettings()).sell_down  # lean batches: little left
    assert lean is None or lean.expected_leftover >= 1


def test_seeded_and_fast():
    items = [item(item_id=i, scale=0.5 + i % 4, shelf=4.0 + i % 3 * 4, price=3 + i % 5) for i in range(30)]
    t0 = time.perf_counter()
    a = plan_day(items, RELEASES, OPEN, CLOSE, sell_down=SellDownSettings(), seed=9, cover="next_release")
    took = time.perf_counter() - t0
    b = plan_day(items, RELEASES, OPEN, CLOSE, sell_down=SellDownSettings(), seed=9, cover="next_release")
    assert a == b
    assert took < 1.0, took


def test_times():
    assert parse_hhmm("10:30") == 10.5 and hhmm(10.5) == "10:30" and hhmm(6.0) == "06:00"
    with pytest.raises(ValueError, match="25:00"):
        parse_hhmm("25:00")
    with pytest.raises(ValueError, match="closing"):
        plan_day([item()], RELEASES, 19, 7)


def test_covering_the_shelf_life_pools_a_slow_items_demand():
    """A slow, long-lived item: covering until its pieces go stale puts more out at 06:00 and loses fewer sales."""
    slow = item(scale=0.3, shelf=12.0)
    by_release, by_life = one(slow), one(slow, cover="shelf_life")
    assert by_life.releases[0].covers_until == 18.0 and by_release.releases[0].covers_until == 10.5  # 06:00 + 12 h
    assert by_life.releases[0].pieces > by_release.releases[0].pieces
    assert by_life.expected_lost < by_release.expected_lost
    with pytest.raises(ValueError, match="cover"):
        one(slow, cover="all_day")


def test_searched_targets_cost_less_under_top_up_on_fresh_draws():
    """The search minimises the day's expected cost under the top-up rule on the plan's own paths; on demand drawn
    apart from them (the replay's draws) it still costs less than the per-release newsvendor targets."""
    from forecasting.evaluation.intraday import ReplayItem, draw_day, release_plan, replay_day

    items = [item(shelf=12.0, scale=2.0, item_id=1), item(shelf=8.0, scale=0.7, item_id=2, cost=1.6),
             item(shelf=8.0, scale=4.0, item_id=3)]
    ritems = [ReplayItem(it.item_id, it.shelf_hours, it.unit_cost, it.price) for it in items]
    plain = release_plan(items, RELEASES, OPEN, CLOSE, n_samples=1000, seed=3)
    searched = release_plan(items, RELEASES, OPEN, CLOSE, n_samples=1000, seed=3, search=True)
    assert searched.targets is not None and not np.array_equal(searched.targets, plain.targets)
    cost = {"plain": [], "searched": []}
    for s in range(400):
        d = draw_day([it.hourly_mean for it in items], 0.08, OPEN, CLOSE, 0.25, seed=1000 + s)
        cost["plain"].append(replay_day(ritems, plain, d, OPEN, CLOSE, 0.25).total_cost)
        cost["searched"].append(replay_day(ritems, searched, d, OPEN, CLOSE, 0.25).total_cost)
    assert np.mean(cost["searched"]) < np.mean(cost["plain"])


def test_waste_weight_trades_waste_for_lost_sales_and_says_so():
    it = item(shelf=8.0, scale=2.0)
    base, weighed = one(it, search=True), one(it, search=True, waste_weight=2.0)
    assert weighed.expected_waste < base.expected_waste and weighed.expected_lost >= base.expected_lost
    assert weighed.releases[0].service_level < base.releases[0].service_level
    assert "counted as $2.20: waste weight 2" in weighed.releases[0].detail
    assert "waste weight" not in base.releases[0].detail
    with pytest.raises(ValueError, match="rule"):
        one(it, rule="sometimes")
