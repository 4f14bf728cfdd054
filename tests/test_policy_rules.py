"""The policy's pure rules: counts, inventory position, quantile choice, rounding, MOQ, caps."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from forecasting.config import CountCheckConfig, MaterialOverride, ReplenishmentConfig
from forecasting.inventory.policy import (
    assess_count,
    carryover_newsvendor,
    critical_ratio,
    decide_quantity,
    inventory_position,
    outstanding_orders,
    receipts_by_series,
    resolve_policy,
    round_packs,
)

POS = date(2025, 3, 2)  # end of the day before the order date
CHECK = CountCheckConfig()


def days_back(n: int) -> list[date]:
    return [POS - timedelta(days=k) for k in range(n - 1, -1, -1)]


# ---- counts -----------------------------------------------------------------------------------------------------


def steady_counts(n: int = 10, start: float = 100.0, usage: float = 8.0) -> list[float]:
    return [start - usage * k for k in range(n)]


def test_plausible_counts_are_trusted():
    c = assess_count(days_back(10), steady_counts(), None, {}, POS, 1.0, CHECK)
    assert c.flag == "ok" and c.on_hand == pytest.approx(28.0) and c.usage_per_day == pytest.approx(8.0)


def test_unit_confusion_x10_is_flagged_and_replaced_by_expected_on_hand():
    counts = steady_counts()
    counts[-1] = counts[-1] * 10  # 280 instead of 28
    c = assess_count(days_back(10), counts, None, {}, POS, 1.0, CHECK)
    assert c.flag in ("jump_up", "above_usual_max")
    assert c.counted == 280 and c.on_hand == pytest.approx(28.0)
    assert "expected on hand 28" in c.note


def test_x10_after_a_quiet_history_is_caught_by_the_usual_max_without_receipt_data():
    counts = [40.0] * 9 + [400.0]  # no usage (rate 0) and receipts unknown: only the usual-max rule can see it
    c = assess_count(days_back(10), counts, None, None, POS, 1.0, CHECK)
    assert c.flag == "above_usual_max" and c.on_hand == pytest.approx(40.0)


def test_negative_count_is_flagged():
    counts = steady_counts()
    counts[-1] = -5.0
    c = assess_count(days_back(10), counts, None, {}, POS, 1.0, CHECK)
    assert c.flag == "negative" and c.on_hand == pytest.approx(28.0)
    lone = assess_count([POS], [-3.0], None, {}, POS, 1.0, CHECK)
    assert lone.flag == "negative" and lone.on_hand == 0.0


def test_receipt_explains_a_jump_and_counts_drop_to_a_tenth_are_flagged():
    d = days_back(10)
    counts = steady_counts()
    counts[-1] = 28.0 + 120.0  # a delivery of 120 arrived on the last day
    ok = assess_count(d, counts, None, {d[-1]: 120.0}, POS, 1.0, CHECK)
    assert ok.flag == "ok" and ok.on_hand == pytest.approx(148.0)
    bad = assess_count(d, counts, None, {}, POS, 1.0, CHECK)  # receipts known, none recorded
    assert bad.flag == "jump_up"
    low = steady_counts(start=400.0, usage=10.0)
    low[-1] = low[-1] / 10  # 31 instead of 310
    c = assess_count(d, low, None, {}, POS, 1.0, CHECK)
    assert c.flag == "jump_down" and c.on_hand == pytest.approx(310.0)


def test_waste_is_not_usage_and_stale_counts_roll_forward():
    d = days_back(10)[:-3]  # last count 3 days before the position date
    counts = [100.0 - 8.0 * k - 2.0 * k for k in range(7)]  # 8 used + 2 wasted per day
    c = assess_count(d, counts, [0.0] + [2.0] * 6, {}, POS, 1.0, CHECK)
    assert c.usage_per_day == pytest.approx(8.0)
    assert c.flag == "stale" and c.on_hand == pytest.approx(40.0 - 3 * 8.0)
    missing = assess_count([], [], None, {}, POS, 1.0, CHECK)
    assert missing.flag == "missing" and missing.on_hand == 0.0


# ---- orders and inventory position ------------------------------------------------------------------------------


def orders_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "store_id": [1] * 6,
            "material_id": [7] * 6,
            "ordered_on": [date(2025, 2, 27)] * 6,
            "qty": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
            "expected_delivery": [
                date(2025, 3, 1),  # overdue, still open
                date(2025, 3, 5),  # by this order's delivery
                date(2025, 3, 6),  # after it, inside the window
                date(2025, 3, 20),  # after the window end
                date(2025, 3, 3),  # cancelled
                date(2025, 3, 1),  # received in the count already
            ],
            "received_on": [None, None, None, None, None, date(2025, 3, 1)],
            "received_qty": [None, None, None, None, None, 58.0],
            "status": ["open", "confirmed", "open", "open", "cancelled", "received"],
        }
    )


def test_inventory_position_arithmetic():
    out = outstanding_orders(orders_frame(), POS, ReplenishmentConfig().closed_order_statuses)
    assert sorted(out["qty"]) == [10.0, 20.0, 30.0, 40.0]
    pos = inventory_position(25.0, out, 5.0, delivery_date=date(2025, 3, 5), window_end=date(2025, 3, 7))
    assert pos.on_order == 60.0  # 10 overdue + 20 + 30; 40 arrives after the window
    assert (pos.on_order_by_delivery, pos.on_order_after_delivery) == (30.0, 30.0)
    assert pos.inventory_position == 25.0 + 60.0 - 5.0
    assert any("overdue" in n for n in pos.notes) and any("after the window end" in n for n in pos.notes)


def test_receipt_after_the_count_is_still_on_order():
    o = orders_frame()
    o.loc[1, ["received_on", "received_qty", "status"]] = [date(2025, 3, 3), 18.0, "received"]
    out = outstanding_orders(o, POS, ReplenishmentConfig().closed_order_statuses)
    row = out[out["qty"] == 18.0]
    assert len(row) == 1 and row["arrival"].iloc[0] == date(2025, 3, 3)
    rec = receipts_by_series(o)
    assert rec[(1, 7)] == {date(2025, 3, 1): 58.0, date(2025, 3, 3): 18.0}
    assert receipts_by_series(None) is None


# ---- quantile choice --------------------------------------------------------------------------------------------


def material(**kw) -> dict:
    base = {"material_id": 7, "pack_size": 12.0, "is_perishable": False, "storage_class": "ambient", "unit_cost": 2.0}
    return base | kw


def test_service_level_by_class_and_override():
    cfg = ReplenishmentConfig()
    assert resolve_policy(material(), cfg).level == 0.98
    assert resolve_policy(material(storage_class="chilled"), cfg).level == 0.95
    assert resolve_policy(material(policy_class="food"), cfg).level == 0.90
    assert resolve_policy(material(policy_class=float("nan"), storage_class="Chilled"), cfg).level == 0.95
    cfg.supplier_classes[5] = "food"
    assert resolve_policy(material(supplier_id=5), cfg).policy_class == "food"
    odd = resolve_policy(material(storage_class="cellar"), cfg)
    assert not odd.class_known and odd.level == cfg.classes[cfg.default_class].service_level
    cfg2 = ReplenishmentConfig(material_overrides={7: MaterialOverride(service_level=0.8, moq_packs=4)})
    p = resolve_policy(material(), cfg2)
    assert p.level == 0.8 and p.moq_packs == 4


def test_newsvendor_critical_ratio_for_perishables():
    assert critical_ratio(3.0, 1.0) == 0.75
    cfg = ReplenishmentConfig()
    food = cfg.classes["food"]
    food.underage_cost_ratio, food.salvage_ratio = 1.5, 0.25
    p = resolve_policy(material(is_perishable=True, policy_class="food", unit_cost=2.0), cfg)
    assert p.basis == "newsvendor"
    assert (p.underage_cost, p.overage_cost) == (3.0, 1.5)
    assert p.level == pytest.approx(3.0 / 4.5)
    no_cost = resolve_policy(material(is_perishable=True, policy_class="food", unit_cost=None), cfg)
    assert no_cost.level == pytest.approx(p.level)  # the ratio does not depend on the cost level
    cfg.material_overrides[7] = MaterialOverride(underage_cost=9.0, overage_cost=1.0)
    assert resolve_policy(material(is_perishable=True), cfg).level == pytest.approx(0.9)


def test_storage_capacity_from_class_in_units():
    cfg = ReplenishmentConfig()
    cfg.classes["chilled"].max_stock_packs = 10
    assert resolve_policy(material(storage_class="chilled", pack_size=6.0), cfg).max_stock_units == 60.0


# ---- from need to packs -----------------------------------------------------------------------------------------


def codes(d) -> list[str]:
    return [c for c, _ in d.reasons]


def test_pack_rounding_threshold_both_ways():
    up = decide_quantity(34.0, 10.0, 10.0, 0.3)  # need 24 = 2.4 packs
    assert up.qty_packs == 3 and up.qty_units == 30.0 and codes(up) == ["rounded_up"]
    assert up.reasons[0][1] == "rounded up 2.4 -> 3 packs (threshold 0.3)"
    down = decide_quantity(32.0, 10.0, 10.0, 0.3)  # 2.2 packs
    assert down.qty_packs == 2 and codes(down) == ["rounded_down"]
    assert decide_quantity(33.0, 10.0, 10.0, 0.3).qty_packs == 3  # exactly at the threshold rounds up
    assert decide_quantity(34.0, 10.0, 10.0, 0.5).qty_packs == 2
    exact = decide_quantity(30.0, 10.0, 10.0, 0.3)
    assert exact.qty_packs == 2 and exact.reasons == []
    assert round_packs(0.2, 1.0, 0.3) == (0, 0.2)


def test_moq_and_capacity():
    moq = decide_quantity(12.0, 0.0, 10.0, 0.3, moq_packs=3)  # 1.2 -> 1 pack -> MOQ 3
    assert moq.qty_packs == 3 and codes(moq) == ["rounded_down", "moq"]
    cap = decide_quantity(100.0, 0.0, 10.0, 0.3, room_units=55.0)
    assert cap.qty_packs == 5 and "capacity_cap" in codes(cap)
    blocked = decide_quantity(12.0, 0.0, 10.0, 0.3, moq_packs=3, room_units=25.0)
    assert blocked.qty_packs == 0 and "moq_blocked" in codes(blocked)
    full = decide_quantity(100.0, 0.0, 10.0, 0.3, room_units=-20.0)  # store already over capacity
    assert full.qty_packs == 0


def test_shelf_life_cap_is_never_exceeded_by_rounding_or_moq():
    d = decide_quantity(50.0, 0.0, 6.0, 0.3, shelf_cap_units=20.0, shelf_cap_days=1.0)
    assert "capped by shelf life: 1 day of median sales" in d.reasons[0][1]
    assert d.qty_packs == 3 and d.qty_units <= 20.0  # 3.33 packs would round up to 4 = 24 > 20
    tiny = decide_quantity(50.0, 0.0, 6.0, 0.3, shelf_cap_units=4.0)
    assert tiny.qty_packs == 0 and "case_cover" in codes(tiny)
    moq = decide_quantity(50.0, 0.0, 6.0, 0.3, moq_packs=5, shelf_cap_units=20.0)
    assert moq.qty_packs == 0 and "moq_blocked" in codes(moq)


def test_never_negative_when_position_is_huge():
    d = decide_quantity(40.0, 1e9, 6.0, 0.3, moq_packs=2, room_units=-1e6)
    assert d.qty_packs == 0 and d.qty_units == 0.0 and d.need_units == 0.0 and codes(d) == ["covered"]


def test_a_bad_first_count_does_not_poison_the_later_ones():
    counts = steady_counts()
    counts[0] = counts[0] * 10  # the oldest count in the window is the x10 one
    c = assess_count(days_back(10), counts, None, {}, POS, 1.0, CHECK)
    assert c.flag == "ok" and c.on_hand == pytest.approx(28.0)


def test_two_consistent_counts_confirm_a_new_level():
    counts = steady_counts(start=400.0, usage=10.0)
    counts[-2:] = [40.0, 30.0]  # a real loss (say a fridge failure) seen by two counts in a row
    c = assess_count(days_back(10), counts, None, {}, POS, 1.0, CHECK)
    assert c.flag == "ok" and c.on_hand == pytest.approx(30.0)
    counts[-1] = 310.0  # ... but a single odd count (the 40 between 320 and 310) is not
    back = assess_count(days_back(10), counts, None, {}, POS, 1.0, CHECK)
    assert back.flag == "ok" and back.on_hand == 310.0
    counts[-2:] = [320.0, 40.0]
    assert assess_count(days_back(10), counts, None, {}, POS, 1.0, CHECK).flag == "jump_down"


def test_rounding_guard_keeps_big_packs_from_rounding_to_zero_forever():
    # 2,000 sugar packets a pack, 180 needed in the window, 50 left: 0.065 packs rounds down to nothing ...
    plain = decide_quantity(230.0, 50.0, 2000.0, 0.3)
    assert plain.qty_packs == 0 and codes(plain) == ["rounded_down"]
    # ... unless the position after ordering would be below the window's median need
    guarded = decide_quantity(230.0, 50.0, 2000.0, 0.3, floor_units=180.0)
    assert guarded.qty_packs == 1 and codes(guarded) == ["rounded_down", "rounded_up_guard"]
    assert "leave 50 below a median need of 180" in guarded.reasons[-1][1]
    covered = decide_quantity(230.0, 190.0, 2000.0, 0.3, floor_units=180.0)  # 190 already covers the median
    assert covered.qty_packs == 0
    capped = decide_quantity(230.0, 50.0, 2000.0, 0.3, floor_units=180.0, room_units=1000.0)
    assert capped.qty_packs == 0 and "capacity_cap" in codes(capped)  # the storage cap still binds


def test_first_pack_past_the_shelf_life_cap_when_its_margin_is_positive():
    # Plain bagels: packs of 6, the median sells 3.7 before expiry: the hard cap alone never orders one
    none = decide_quantity(5.0, 0.0, 6.0, 0.3, shelf_cap_units=3.7)
    assert none.qty_packs == 0 and "case_cover" in codes(none)
    # lost margin 2.5 x cost: CR 0.71, the pack pays when it sells more than 29% of itself (1.7 of 6)
    one = decide_quantity(5.0, 0.0, 6.0, 0.3, shelf_cap_units=3.7, critical_ratio=2.5 / 3.5)
    assert one.qty_packs == 1 and "first_pack" in codes(one) and "case_cover" not in codes(one)
    thin = decide_quantity(5.0, 0.0, 6.0, 0.3, shelf_cap_units=1.5, critical_ratio=2.5 / 3.5)
    assert thin.qty_packs == 0 and "first_pack" not in codes(thin)  # 1.5 of 6 sells: the first pack loses money
    two = decide_quantity(50.0, 0.0, 6.0, 0.3, shelf_cap_units=20.0, critical_ratio=2.5 / 3.5)
    assert two.qty_packs == 3  # the cap binds as before once a whole pack fits under it


def test_carryover_newsvendor_orders_more_when_leftovers_keep():
    rng = np.random.default_rng(0)
    window = rng.poisson(10.0, size=(1, 2000)).astype(float)  # demand until the next delivery
    same, lv_same = carryover_newsvendor(window, window, 2.5, 1.0)  # shelf life = review period: plain newsvendor
    assert lv_same[0] >= 2.5 / 3.5 - 1e-9 and same[0] == pytest.approx(np.quantile(window[0], 2.5 / 3.5), abs=1)
    life = window + rng.poisson(10.0, size=(1, 2000))  # leftovers sell one more day before they expire
    more, lv_more = carryover_newsvendor(window, life, 2.5, 1.0)
    assert more[0] > same[0] and lv_more[0] > 0.9
