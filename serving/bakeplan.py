"""The thaw and bake plan from the served state: the one path behind ``POST /bake-plan`` and the workbench's page.

Why from the serving state: it already holds the champion's cached daily forecasts (mean and dispersion per store x
product x day), the hourly profiles ``/forecast`` uses and the source's master data, so the plan a store sees on its
page is the plan the API serves for the same model. The core (``forecasting.inventory.bake``) takes hourly means and
a dispersion per item; the hourly profile of an item and day is ``/forecast``'s (the day's covariates included).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from forecasting.config import BakeConfig, Settings
from forecasting.inventory.bake import BakeItem, BakePlan, SellDownSettings, hhmm, parse_hhmm, plan_day
from forecasting.inventory.policy import resolve_policy


def ready_food(master, settings: Settings) -> pd.DataFrame:
    """Ready-food items: products that are not drinks and use exactly one piece of a material of a food class
    (``planning.bake.food_classes``) that no other product uses; with cost, price and shelf hours."""
    cfg: BakeConfig = settings.planning.bake
    cols = ["product_id", "material_id", "name", "category", "unit_cost", "price", "shelf_hours"]
    products = master.products
    if products is None or products.empty:
        return pd.DataFrame(columns=cols)
    classes = {c.strip().lower() for c in cfg.food_classes}
    mats = master.materials
    food_mats = {int(r["material_id"]): r for r in mats.to_dict("records")
                 if resolve_policy(r, settings.replenishment).policy_class in classes}
    bom = master.bom[master.bom["material_id"].astype(int).isin(food_mats)]
    users = bom.groupby("material_id")["product_id"].nunique()
    bom = bom[bom["material_id"].map(users).eq(1) & np.isclose(bom["qty_per_unit"].astype(float), 1.0)]
    prod = products.set_index(products["product_id"].astype(int))
    by_cat = {k.strip().lower(): float(v) for k, v in cfg.shelf_hours_by_category.items()}
    rows = []
    for pid, mid in zip(bom["product_id"].astype(int), bom["material_id"].astype(int), strict=True):
        if pid not in prod.index or bool(prod.at[pid, "is_drink"]):
            continue
        m = food_mats[mid]
        cat = str(prod.at[pid, "category"] or "")
        shelf = cfg.material_shelf_hours.get(mid, by_cat.get(cat.strip().lower(), cfg.default_shelf_hours))
        cost = m.get("unit_cost")
        rows.append({"product_id": pid, "material_id": mid, "name": str(prod.at[pid, "product_name"]),
                     "category": cat, "unit_cost": float(cost) if cost is not None and not pd.isna(cost) else 0.0,
                     "price": float(prod.at[pid, "list_price"] or 0.0), "shelf_hours": float(shelf)})
    return pd.DataFrame(rows, columns=cols)


def hourly_means(daily_mean: float, profile: tuple[np.ndarray, np.ndarray] | None, open_hour: int,
                 close_hour: int) -> dict[int, float]:
    """The day's mean spread over hours by the profile's shares (renormalised to the opening hours), or evenly."""
    hours = range(open_hour, close_hour)
    if profile is not None:
        share = {int(h): float(s) for h, s in zip(*profile, strict=True) if open_hour <= int(h) < close_hour}
        tot = sum(share.values())
        if tot > 0:
            return {h: daily_mean * s / tot for h, s in share.items()}
    return {h: daily_mean / len(hours) for h in hours}


def store_plan(st, settings: Settings, store_id: int, day: date) -> tuple[BakePlan, pd.DataFrame, list[str], str]:
    """The plan of one store and day from a serving state: (plan, items table, warnings, hourly basis).

    Raises KeyError(message) for a store or day the state cannot plan (the caller maps it to a 4xx)."""
    cfg = settings.planning.bake
    sf = st.forecasts.get(store_id)
    if sf is None:
        raise KeyError(f"store_id {store_id} has no forecasts in model {st.model_version}")
    t = (day - sf.first).days
    if not 0 <= t < sf.mean.shape[1] or day < st.fc_first or day > st.fc_last:
        raise LookupError(f"date {day} is outside what model {st.model_version} forecasts: {st.fc_first} to "
                          f"{st.fc_last}")
    stores = st.master.stores
    row = stores[stores["store_id"].astype(int) == store_id].iloc[0]
    open_h, close_h = int(row.get("open_hour", 7)), int(row.get("close_hour", 19))
    food = ready_food(st.master, settings)
    index = {int(p): i for i, p in enumerate(sf.product_ids.tolist())}
    food = food[food["product_id"].map(lambda p: p in index and bool(sf.present[index[p], t]))].reset_index(drop=True)
    warnings: list[str] = []
    basis = "profile"
    if st.hourly is None:
        basis = "flat"
        warnings.append("no hourly profiles (the feature store has no hourly panel): demand is spread evenly over "
                        "the opening hours; build the features (`replenish features build`) for the real profile")
    items = []
    for r in food.itertuples(index=False):
        i = index[int(r.product_id)]
        pid, hs = int(r.product_id), st.hourly
        prof = hs.on_day(store_id, pid, day) if hs is not None else None
        items.append(BakeItem(int(r.product_id), str(r.name),
                              hourly_means(float(sf.mean[i, t]), prof, open_h, close_h), float(sf.alpha[i, t]),
                              float(r.shelf_hours), float(r.unit_cost), float(r.price)))
    sd = cfg.sell_down
    plan = plan_day(items, [parse_hhmm(x) for x in cfg.release_times], open_h, close_h,
                    lead_hours=cfg.lead_minutes / 60,
                    sell_down=SellDownSettings(sd.hours_before_close, sd.discount, sd.lift, sd.min_saved_pieces),
                    n_samples=cfg.n_samples, seed=cfg.seed + store_id * 10_007 + day.toordinal(),
                    slot_minutes=cfg.slot_minutes, cover=cfg.cover, rule=cfg.rule,
                    search=cfg.search_targets, waste_weight=cfg.waste_weight)
    if plan.dropped_times:
        warnings.append(f"release times {', '.join(hhmm(x) for x in plan.dropped_times)} are at or after closing "
                        f"({hhmm(close_h)}) and are not used; move them in planning.bake.release_times")
    if food.empty:
        warnings.append(f"store {store_id} has no ready-food items with a forecast on {day}: nothing to thaw or bake")
    plan.assumptions.append(f"coupon: {sd.discount:.0%} off from {hhmm(close_h - sd.hours_before_close)}, "
                            f"assumed +{sd.lift:.0%} demand for the item in that window; offered when it saves at "
                            f"least {sd.min_saved_pieces:g} pc and adds revenue")
    plan.assumptions.append(f"thawing or baking starts {cfg.lead_minutes} min before each release")
    return plan, food, warnings, basis


def plan_json(plan: BakePlan, food: pd.DataFrame) -> list[dict]:
    """The plan's items as plain dicts in the response model's shape, most pieces first."""
    meta = {int(r.product_id): r for r in food.itertuples(index=False)}
    out = []
    for it in plan.items:
        m = meta[it.item_id]
        rel = [{"time": hhmm(r.time), "start_by": hhmm(r.start_by), "covers_until": hhmm(r.covers_until),
                "pieces": r.pieces, "shelf_target_pcs": r.shelf_target,
                "demand_pcs": r.demand_mean, "fresh_carried_pcs": r.fresh_carried,
                "expected_sold_pcs": r.expected_sold, "expected_waste_pcs": r.expected_waste,
                "expected_lost_pcs": r.expected_lost, "waste_usd": r.waste_usd, "lost_margin_usd": r.lost_margin_usd,
                "service_level": r.service_level, "reason": r.reason, "detail": r.detail}
               for r in it.releases]
        s = it.sell_down
        sd = None if s is None else {
            "time": hhmm(s.time), "offer": s.offer, "discount": s.discount, "lift": s.lift,
            "expected_leftover_pcs": s.expected_leftover, "expected_saved_pcs": s.expected_saved,
            "effect_usd": s.effect_usd, "reason": s.reason}
        out.append({"product_id": it.item_id, "material_id": int(m.material_id), "name": it.name,
                    "category": str(m.category), "daily_mean_pcs": it.daily_mean, "shelf_hours": it.shelf_hours,
                    "unit_cost_usd": it.unit_cost, "price_usd": it.price, "pieces": it.pieces,
                    "expected_sold_pcs": it.expected_sold, "expected_waste_pcs": it.expected_waste,
                    "expected_lost_pcs": it.expected_lost,
                    "waste_usd": round(sum(r["waste_usd"] for r in rel), 2),
                    "lost_margin_usd": round(sum(r["lost_margin_usd"] for r in rel), 2),
                    "releases": rel, "sell_down": sd})
    out.sort(key=lambda d: (-d["pieces"], d["name"]))
    return out
