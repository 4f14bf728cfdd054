"""The daily proposal end to end on a small Manhattan world: explained lines, caps, counts, determinism, speed."""

from __future__ import annotations

import time
from datetime import date, timedelta
from datetime import time as clock

import numpy as np
import pandas as pd
import pytest

from forecasting.config import ReplenishmentConfig, load_settings
from forecasting.errors import DataError
from forecasting.inventory.proposal import ProposalLine, lines_to_frame, propose

TUE = date(2025, 3, 4)  # order date: dairy (Mon,Wed,Fri, lead 1) delivers Wed; dry goods (Thu, lead 2) do not
BEANS, MILK, CUPS, CROISSANT = 101, 102, 103, 104


def world(order_date: date = TUE, horizon: int = 14) -> dict:
    suppliers = pd.DataFrame(
        {
            "supplier_id": [1, 2, 3],
            "supplier_name": ["dairy", "dry", "bakery"],
            "lead_time_days": [1, 2, 1],
            "delivery_weekdays": ["Mon,Wed,Fri", "Thu", "daily"],
            "order_cutoff": ["14:00", "12:00", "20:00"],
        }
    )
    materials = pd.DataFrame(
        {
            "material_id": [BEANS, MILK, CUPS, CROISSANT],
            "material_name": ["espresso beans", "whole milk", "12oz cup", "butter croissant"],
            "unit": ["g", "ml", "each", "each"],
            "pack_size": [1000.0, 3785.0, 50.0, 12.0],
            "shelf_life_days": [180, 2, None, 1],
            "is_perishable": [False, True, False, True],
            "storage_class": ["ambient", "chilled", "ambient", "chilled"],
            "policy_class": [None, None, None, "food"],
            "supplier_id": [2, 1, 2, 3],
            "unit_cost": [0.02, 0.001, 0.08, 1.2],
        }
    )
    bom = pd.DataFrame(
        {
            "product_id": [1, 1, 1, 2, 2, 3],  # 1 latte, 2 americano, 3 croissant
            "material_id": [BEANS, MILK, CUPS, BEANS, CUPS, CROISSANT],
            "qty_per_unit": [18.0, 240.0, 1.0, 18.0, 1.0, 1.0],
        }
    )
    rows = []
    for s in (1, 2):
        for p, base in ((1, 120.0), (2, 60.0), (3, 25.0)):
            for h in range(horizon):
                d = order_date + timedelta(days=h)
                rows.append((s, p, d, base * (1.0 if d.weekday() < 5 else 0.7) * (1.0 + 0.2 * (s - 1)), 0.15))
    forecasts = pd.DataFrame(rows, columns=["store_id", "product_id", "date", "mean", "dispersion"])
    usage = {BEANS: 3200.0, MILK: 29000.0, CUPS: 180.0, CROISSANT: 25.0}
    start = {BEANS: 20000.0, MILK: 60000.0, CUPS: 2000.0, CROISSANT: 30.0}
    inv = []
    for s in (1, 2):
        for m in usage:
            for k in range(7, 0, -1):
                d = order_date - timedelta(days=k)
                on_hand = start[m] - usage[m] * (7 - k) if m not in (MILK, CROISSANT) else start[m] * 0.3
                inv.append((s, m, d, max(on_hand, 0.0), 0.0, 0.0))
    inventory = pd.DataFrame(
        inv, columns=["store_id", "material_id", "snapshot_date", "on_hand_qty", "waste_qty", "stockout_hours"]
    )
    orders = pd.DataFrame(
        {
            "order_no": [1, 2],
            "store_id": [1, 1],
            "material_id": [CUPS, BEANS],
            "ordered_on": [order_date - timedelta(days=2)] * 2,
            "qty": [500.0, 5000.0],
            "expected_delivery": [order_date + timedelta(days=2), order_date + timedelta(days=30)],
            "received_on": [None, None],
            "received_qty": [None, None],
            "status": ["open", "open"],
        }
    )
    return dict(forecasts=forecasts, materials=materials, bom=bom, suppliers=suppliers, inventory=inventory,
                orders=orders)


def run(w: dict, order_date: date = TUE, cfg: ReplenishmentConfig | None = None, **kw) -> list[ProposalLine]:
    cfg = cfg or ReplenishmentConfig(n_samples=600)
    return propose(
        w["forecasts"], w["materials"], w["bom"], w["suppliers"], w["inventory"], order_date, cfg, "lgbm-2025.03.03",
        order_date - timedelta(days=1), orders=w.get("orders"), **kw,
    )


def by_key(lines: list[ProposalLine]) -> dict[tuple[int, int], ProposalLine]:
    return {(ln.store_id, ln.material_id): ln for ln in lines}


def test_every_line_is_explained_and_consistent():
    lines = run(world())
    assert len(lines) == 8
    for ln in lines:
        assert ln.explanation and ln.explanation.endswith(".")
        assert ln.model_version == "lgbm-2025.03.03" and ln.data_date == TUE - timedelta(days=1)
        assert ln.window_days == ln.lead_days + ln.review_days
        assert ln.safety_stock == pytest.approx(ln.demand_quantile - ln.demand_median)
        assert ln.inventory_position == pytest.approx(ln.on_hand_used + ln.on_order - ln.committed)
        assert ln.qty_units == pytest.approx(ln.qty_packs * ln.pack_size) and ln.qty_packs >= 0
        assert ln.demand_quantile >= ln.demand_median
        assert ln.reason_codes or ln.qty_packs > 0
        assert ProposalLine.model_validate_json(ln.model_dump_json()) == ln  # the API payload round-trips
    frame = lines_to_frame(lines)
    assert len(frame) == 8 and {"qty_packs", "explanation", "reason_codes"} <= set(frame.columns)


def test_order_day_lines_order_up_to_the_window_quantile():
    lines = by_key(run(world()))
    cups = lines[(2, CUPS)]  # dry goods: Thu deliveries, lead 2: Tuesday is the order day
    assert cups.is_order_day and cups.delivery_date == TUE + timedelta(days=2)
    assert cups.window_days == 9 and cups.quantile_basis == "service_level" and cups.quantile_level == 0.98
    assert cups.need_units == pytest.approx(max(0.0, cups.order_up_to - cups.inventory_position))
    assert cups.qty_packs > 0 and cups.qty_units >= cups.need_units - 0.3 * cups.pack_size
    assert lines[(1, CUPS)].on_order == 500.0  # the open order arriving Thursday is in the position
    beans = lines[(1, BEANS)]
    assert beans.on_order == 0.0 and "on_order" in beans.reason_codes  # arriving after the window: ignored


def test_perishable_uses_newsvendor_and_shelf_life_cap_binds():
    lines = by_key(run(world()))
    milk = lines[(1, MILK)]  # 2-day shelf life, 3-day window (Tue..Thu): S covers more than milk keeps
    # newsvendor CR 6/7, raised to the chilled class's service level 0.95 (a milk stockout blocks its drinks)
    assert milk.quantile_basis == "newsvendor" and milk.quantile_level == pytest.approx(0.95)
    assert "service-level floor" in milk.explanation
    assert milk.shelf_life_cap_units is not None
    assert "shelf_life_cap" in milk.reason_codes
    assert milk.qty_units <= milk.shelf_life_cap_units + 1e-9
    assert "capped by shelf life" in milk.explanation
    croissant = lines[(1, CROISSANT)]
    assert croissant.policy_class == "food" and croissant.quantile_basis == "newsvendor"
    assert croissant.quantile_level == pytest.approx(0.90)  # CR 2.5 / 3.5 = 0.71 under the food floor 0.90
    plain = by_key(run(world(), cfg=ReplenishmentConfig(n_samples=600, perishable_service_floor=False)))
    assert plain[(1, MILK)].quantile_level == pytest.approx(6.0 / 7.0)
    assert plain[(1, CROISSANT)].quantile_level == pytest.approx(2.5 / 3.5)  # lost margin 2.5 x cost: CR 0.71
    assert plain[(1, MILK)].demand_quantile <= milk.demand_quantile


def test_a_perishable_sold_as_one_product_rounds_to_the_nearest_pack():
    w = world()
    m = w["materials"]
    m.loc[m["material_id"] == CROISSANT, ["shelf_life_days", "pack_size"]] = [4, 18.0]  # need 78 = 4.3 packs
    lines = by_key(run(w))
    # the croissant goes into product 3 only, the milk into the latte only: each prices its own stockout
    croissant, milk = lines[(1, CROISSANT)], lines[(1, MILK)]
    assert 4.3 < croissant.need_units / 18.0 < 4.5 and croissant.qty_packs == 4  # 0.3 of a pack: rounded down
    assert "rounded down" in croissant.explanation and "(threshold 0.5)" in croissant.explanation
    assert "(threshold 0.5)" in milk.explanation
    w["bom"] = pd.concat([w["bom"], pd.DataFrame({"product_id": [2], "material_id": [MILK], "qty_per_unit": [20.0]})],
                         ignore_index=True)
    shared = by_key(run(w))  # milk in the americano too: a short pack would block two drinks
    assert "(threshold 0.3)" in shared[(1, MILK)].explanation
    assert "(threshold 0.5)" in shared[(1, CROISSANT)].explanation
    old = by_key(run(w, cfg=ReplenishmentConfig(n_samples=600, rounding_threshold_single=0.3)))
    assert old[(1, CROISSANT)].qty_packs == 5 and old[(1, CROISSANT)].need_units == pytest.approx(
        croissant.need_units)


def test_not_an_order_day_gives_a_zero_line_with_the_next_order_day():
    lines = by_key(run(world()))
    milk_wed_delivery = lines[(1, MILK)]
    assert milk_wed_delivery.is_order_day  # Tue + 1 = Wed is a dairy day
    beans = lines[(1, BEANS)]
    assert beans.is_order_day
    w = world(order_date=TUE + timedelta(days=1))  # Wednesday: dry goods (Thu, lead 2) cannot be reached
    wed = by_key(run(w, order_date=TUE + timedelta(days=1)))
    ln = wed[(1, CUPS)]
    assert not ln.is_order_day and ln.qty_packs == 0 and "not_order_day" in ln.reason_codes
    assert "next order day Tue" in ln.explanation
    quiet_cfg = ReplenishmentConfig(n_samples=200, emit_non_order_days=False)
    quiet = run(w, order_date=TUE + timedelta(days=1), cfg=quiet_cfg)
    assert {ln.material_id for ln in quiet} == {CROISSANT}  # daily bakery only; dairy Wed + 1 = Thu is no delivery


def test_cutoff_passed_moves_the_order_to_the_next_day():
    lines = by_key(run(world(), order_time=clock(15, 30)))
    milk = lines[(1, MILK)]  # after the 14:00 dairy cutoff: counts as Wednesday's order, Wed + 1 = Thu is no delivery
    assert milk.effective_order_date == TUE + timedelta(days=1) and not milk.is_order_day
    assert "cutoff_passed" in milk.reason_codes and milk.qty_packs == 0
    assert lines[(1, CROISSANT)].is_order_day  # the bakery's 20:00 cutoff has not passed


def test_implausible_count_is_flagged_and_not_trusted():
    w = world()
    inv = w["inventory"]
    last = (inv["store_id"] == 1) & (inv["material_id"] == BEANS) & (inv["snapshot_date"] == TUE - timedelta(days=1))
    true_on_hand = float(inv.loc[last, "on_hand_qty"].iloc[0])
    inv.loc[last, "on_hand_qty"] = true_on_hand * 10  # kg typed as 100 g units
    ln = by_key(run(w))[(1, BEANS)]
    assert ln.count_flag in ("jump_up", "above_usual_max") and ln.needs_review
    assert ln.on_hand_counted == pytest.approx(true_on_hand * 10)
    assert ln.on_hand_used == pytest.approx(true_on_hand, rel=0.05)
    assert any(c.startswith("count_") for c in ln.reason_codes)


def test_huge_position_orders_nothing():
    w = world()
    w["inventory"]["on_hand_qty"] *= 1.0  # unchanged history, but commit a huge open order to every line
    big = w["inventory"][["store_id", "material_id"]].drop_duplicates().assign(
        order_no=range(10, 18), ordered_on=TUE - timedelta(days=1), qty=1e9, expected_delivery=TUE,
        received_on=None, received_qty=None, status="open",
    )
    w["orders"] = big
    for ln in run(w):
        assert ln.qty_packs == 0 and ln.qty_units == 0.0
        assert "covered" in ln.reason_codes or "not_order_day" in ln.reason_codes


def test_committed_quantity_lowers_the_position():
    w = world()
    committed = pd.DataFrame({"store_id": [2], "material_id": [CUPS], "committed_qty": [300.0]})
    base = by_key(run(w))[(2, CUPS)]
    after = by_key(run(w, committed=committed))[(2, CUPS)]
    assert after.committed == 300.0
    assert after.inventory_position == pytest.approx(base.inventory_position - 300.0)


def test_same_seed_same_proposal():
    w = world()
    a, b = run(w), run(w)
    assert [ln.model_dump() for ln in a] == [ln.model_dump() for ln in b]
    c = run(w, cfg=ReplenishmentConfig(n_samples=600, seed=99))
    assert [ln.demand_quantile for ln in a] != [ln.demand_quantile for ln in c]


def test_default_config_file_loads_the_replenishment_section():
    s = load_settings(environ={"REPLENISH__REPLENISHMENT__N_SAMPLES": "300"})
    assert s.replenishment.n_samples == 300
    assert s.replenishment.classes["food"].service_level == 0.90


def test_contract_errors():
    w = world()
    with pytest.raises(DataError, match="materials"):
        run(w | {"materials": w["materials"][w["materials"]["material_id"] != MILK]})
    late = w["forecasts"][pd.to_datetime(w["forecasts"]["date"]) >= pd.Timestamp(TUE + timedelta(days=10))]
    with pytest.raises(DataError, match="do not cover"):
        run(w | {"forecasts": late})
    with pytest.raises(DataError, match="recipe"):
        run(w | {"bom": w["bom"].head(0)})


def test_full_proposal_is_fast_for_10_stores_100_materials():
    rng = np.random.default_rng(0)
    stores, products, n_mat = range(1, 11), range(1, 81), 100
    fc = pd.DataFrame(
        [(s, p, TUE + timedelta(days=h)) for s in stores for p in products for h in range(14)],
        columns=["store_id", "product_id", "date"],
    )
    fc["mean"], fc["dispersion"] = rng.gamma(1.5, 6.0, len(fc)), 0.2
    w = world()
    mats = pd.DataFrame(
        {
            "material_id": range(1, n_mat + 1),
            "unit": "each",
            "pack_size": rng.choice([6.0, 12.0, 50.0], n_mat),
            "shelf_life_days": rng.choice([2, 5, 365], n_mat),
            "storage_class": rng.choice(["ambient", "chilled", "frozen"], n_mat),
            "supplier_id": rng.choice([1, 2, 3], n_mat),
            "unit_cost": rng.uniform(0.05, 3.0, n_mat),
        }
    )
    mats["is_perishable"] = mats["shelf_life_days"] < 30
    bom = pd.DataFrame(
        [(p, int(m), 1.0) for p in products for m in rng.choice(np.arange(1, n_mat + 1), 6, replace=False)],
        columns=["product_id", "material_id", "qty_per_unit"],
    )
    bom = pd.concat([bom, pd.DataFrame({"product_id": 1, "material_id": range(1, n_mat + 1), "qty_per_unit": 0.5})])
    bom = bom.drop_duplicates(["product_id", "material_id"])
    inv = pd.DataFrame(
        [(s, m, TUE - timedelta(days=k), float(rng.integers(50, 200))) for s in stores for m in range(1, n_mat + 1)
         for k in range(1, 15)],
        columns=["store_id", "material_id", "snapshot_date", "on_hand_qty"],
    )
    t0 = time.perf_counter()
    lines = propose(fc, mats, bom, w["suppliers"], inv, TUE, ReplenishmentConfig(), "m", TUE - timedelta(days=1))
    elapsed = time.perf_counter() - t0
    print(f"propose, 10 stores x 100 materials: {elapsed:.2f} s")
    assert len(lines) == 1000 and all(ln.qty_packs >= 0 for ln in lines)
    assert elapsed < 10.0  # ~1.5-2.5 s on 2 shared cores


def test_stock_expiring_before_the_delivery_covers_only_the_days_until_then():
    w = world()
    mon = TUE - timedelta(days=1)
    inv = w["inventory"]
    at = (inv["store_id"] == 1) & (inv["material_id"] == MILK) & (inv["snapshot_date"] == mon)
    w["inventory"] = inv.assign(on_hand_qty=inv["on_hand_qty"].where(~at, 60000.0))
    w["orders"] = pd.DataFrame(w["orders"].to_dict("records") + [dict(
        order_no=3, store_id=1, material_id=MILK, ordered_on=mon - timedelta(days=1), qty=42000.0,
        expected_delivery=mon, received_on=mon, received_qty=42000.0, status="received")])
    milk = by_key(run(w))[(1, MILK)]  # the 60,000 counted Monday were received Monday or before: 2-day shelf life
    mats = w["materials"]
    w["materials"] = mats.assign(shelf_life_days=mats["shelf_life_days"].where(mats["material_id"] != MILK, 5))
    keeps = by_key(run(w))[(1, MILK)]  # the same stock with a 5-day shelf life sells past the Wednesday delivery
    assert keeps.on_hand_used == pytest.approx(60000.0) and "expiring" not in keeps.reason_codes
    assert "expiring" in milk.reason_codes and "expires before the delivery" in milk.explanation
    assert milk.on_hand_used < 40000.0  # only Tuesday's median sales (~28,800 ml) of it count
    assert milk.inventory_position < keeps.inventory_position - 20000.0
    # fresh and expiring stock together: Monday's 20,000 (3-day life) last past the delivery, Sunday's 40,000 do not
    w["materials"] = mats.assign(shelf_life_days=mats["shelf_life_days"].where(mats["material_id"] != MILK, 3))
    rows = [r for r in w["orders"].to_dict("records") if r["order_no"] != 3]
    w["orders"] = pd.DataFrame(rows + [
        dict(order_no=3, store_id=1, material_id=MILK, ordered_on=mon - timedelta(days=1), qty=20000.0,
             expected_delivery=mon, received_on=mon, received_qty=20000.0, status="received"),
        dict(order_no=4, store_id=1, material_id=MILK, ordered_on=mon - timedelta(days=2), qty=40000.0,
             expected_delivery=mon - timedelta(days=1), received_on=mon - timedelta(days=1), received_qty=40000.0,
             status="received")])
    mixed = by_key(run(w))[(1, MILK)]
    assert 20000.0 + 25000.0 < mixed.on_hand_used < 20000.0 + 33000.0  # fresh + Tuesday's median sales of the rest


def test_a_late_delivery_rate_widens_perishable_windows_only():
    w = world()
    base = by_key(run(w))
    late = by_key(run(w, cfg=ReplenishmentConfig(n_samples=600, late_delivery_rate=0.3)))
    for m in (MILK, CROISSANT):  # a share of the paths runs a day longer: the window quantile rises
        assert late[(1, m)].demand_quantile > base[(1, m)].demand_quantile
    for m in (BEANS, CUPS):  # shelf-stable: unchanged
        assert late[(1, m)].demand_quantile == pytest.approx(base[(1, m)].demand_quantile)
    again = by_key(run(w, cfg=ReplenishmentConfig(n_samples=600, late_delivery_rate=0.3)))
    assert again[(1, CROISSANT)].demand_quantile == late[(1, CROISSANT)].demand_quantile  # seeded


def test_late_paths_do_not_depend_on_the_other_stores_proposed():
    w = world()
    cfg = ReplenishmentConfig(n_samples=600, late_delivery_rate=0.3)
    both = by_key(run(w, cfg=cfg))
    one = dict(w, forecasts=w["forecasts"][w["forecasts"]["store_id"] == 2])
    alone = by_key(run(one, cfg=cfg))
    assert alone[(2, CROISSANT)].demand_quantile == both[(2, CROISSANT)].demand_quantile
    assert alone[(2, MILK)].demand_quantile == both[(2, MILK)].demand_quantile
