"""The exceptions a planner clears first: each one actionable, with the numbers behind it.

Why computed here and not in the engine: they compare a line with things the engine does not need to decide the
quantity (the usual order size, how long a store has counted an item, the day-by-day path of stock before the
delivery), and they only matter to the person reading the report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from forecasting.config import ExceptionConfig, ReplenishmentConfig
from forecasting.inventory.policy import fmt, outstanding_orders
from planning.words import amount, is_discrete, packs

SEVERITY = {"stockout": 0, "replan": 1, "implausible_count": 1, "high_order": 2, "review": 3, "new_item": 4}
TITLES = {
    "replan": "Re-plan differs from the approved line",
    "stockout": "Projected stockout before the delivery",
    "implausible_count": "Implausible or missing count",
    "high_order": "Order far above the usual",
    "review": "Engine asks for a review",
    "new_item": "New item, little history",
}
COUNT_WORDS = {
    "negative": "a negative count", "above_usual_max": "far above the usual maximum",
    "jump_up": "a jump up without a delivery", "jump_down": "a sudden drop", "missing": "no recent count",
    "stale": "an old count",
}
REVIEW_WORDS = {
    "case_cover": "one pack lasts longer than the shelf life", "moq_blocked": "the minimum order does not fit",
    "forecast_short": "the forecast does not cover the whole window", "unknown_class": "material class not set up",
    "no_shelf_life": "perishable without a shelf life",
}


@dataclass(frozen=True)
class PlanException:
    store_id: int
    material_id: int
    kind: str  # a key of SEVERITY
    message: str

    @property
    def title(self) -> str:
        return TITLES[self.kind]

    def to_dict(self) -> dict:
        return asdict(self) | {"title": self.title}


def material_daily_means(forecasts: pd.DataFrame, bom: pd.DataFrame) -> pd.DataFrame:
    """store_id, material_id, date, mean: product means pushed through the recipes."""
    f = forecasts[["store_id", "product_id", "date", "mean"]].merge(bom, on="product_id")
    f["mean"] = f["mean"] * f["qty_per_unit"]
    out = f.groupby(["store_id", "material_id", "date"], as_index=False)["mean"].sum()
    out["date"] = pd.to_datetime(out["date"]).dt.date
    return out


def usual_order_packs(orders: pd.DataFrame, materials: pd.DataFrame, order_date: date, weeks: int) -> pd.Series:
    """Median packs of the positive orders of the last ``weeks`` weeks, by (store_id, material_id)."""
    if orders is None or orders.empty:
        return pd.Series(dtype=float)
    o = orders[pd.to_datetime(orders["ordered_on"]) >= pd.Timestamp(order_date - timedelta(weeks=weeks))]
    o = o[o["qty"] > 0].merge(materials[["material_id", "pack_size"]], on="material_id")
    if o.empty:
        return pd.Series(dtype=float)
    return (o["qty"] / o["pack_size"]).groupby([o["store_id"], o["material_id"]]).median()


def find_exceptions(
    lines: pd.DataFrame,
    forecasts: pd.DataFrame,
    bom: pd.DataFrame,
    materials: pd.DataFrame,
    inventory: pd.DataFrame,
    orders: pd.DataFrame | None,
    order_date: date,
    cfg: ExceptionConfig,
    repl: ReplenishmentConfig,
) -> list[PlanException]:
    """Exceptions for the proposal ``lines`` (``lines_to_frame`` of one or more stores), most severe first."""
    if lines.empty:
        return []
    out: list[PlanException] = []
    daily = material_daily_means(forecasts, bom)
    daily_idx = {k: g.sort_values("date") for k, g in daily.groupby(["store_id", "material_id"])}
    pending = outstanding_orders(orders, order_date - timedelta(days=1), repl.closed_order_statuses)
    pend_idx = {k: g for k, g in pending.groupby(["store_id", "material_id"])} if len(pending) else {}
    usual = usual_order_packs(orders, materials, order_date, cfg.usual_order_weeks)
    inv = inventory.copy()
    inv["snapshot_date"] = pd.to_datetime(inv["snapshot_date"]).dt.date
    count_days = inv.groupby(["store_id", "material_id"])["snapshot_date"].nunique()
    new_share = _new_segment_share(forecasts, bom)
    # stores without a single count (a sales-only source, e.g. a POS import): the engine takes on hand as 0, so a
    # stockout, a missing count and "few days of counts" on every line would be noise; one notice per store instead
    uncounted = _uncounted_stores(lines, inv)
    for store in sorted(uncounted):
        out.append(PlanException(store, 0, "implausible_count", f"No inventory counts for this store in the last "
                                 f"{repl.counts.lookback_days} days (the source has none, e.g. a sales-only import): "
                                 "on hand is taken as 0, so every line orders its whole window need. Count the "
                                 "stock (t_inventory_snapshot) or send the counts with the API request."))

    for ln in lines.itertuples(index=False):
        key = (int(ln.store_id), int(ln.material_id))
        name = ln.material_name or f"material {ln.material_id}"
        unit = ln.unit or "units"

        def add(kind: str, msg: str, key=key) -> None:
            out.append(PlanException(key[0], key[1], kind, msg))

        blind = key[0] in uncounted
        # 1. stock runs out before this order can arrive (mean path, arrivals on their expected day)
        g = None if blind else daily_idx.get(key)
        if g is not None:
            until = ln.delivery_date
            g = g[(g["date"] >= order_date) & (g["date"] < until)]
            stock = float(ln.on_hand_used)
            p = pend_idx.get(key)
            arrivals = {} if p is None else p.groupby("arrival")["qty"].sum().to_dict()
            until_delivery = float(g["mean"].sum()) - float(ln.on_hand_used) - sum(
                float(q) for a, q in arrivals.items() if a < until)
            for d, m in zip(g["date"], g["mean"], strict=True):
                stock += float(arrivals.get(d, 0.0))
                if stock - m < -1e-9 and m > 0:
                    use = g["mean"].mean()
                    now = "is out of stock now" if ln.on_hand_used <= 1e-9 and d == order_date else \
                        f"has {amount(ln.on_hand_used, unit)} on hand, running out around {d:%a %m-%d}"
                    add("stockout", f"{name} {now} (about {amount(use, unit)}/day expected). "
                                    + stockout_action(ln, max(until_delivery, 0.0), unit))
                    break
                stock -= m
        # 2. the count the engine could not trust
        if ln.count_flag != "ok" and not blind:
            counted = "no count" if ln.on_hand_counted is None or pd.isna(ln.on_hand_counted) else \
                f"counted {amount(ln.on_hand_counted, unit)} on {pd.Timestamp(ln.count_date):%m-%d}"
            add("implausible_count", f"{name}: {COUNT_WORDS.get(ln.count_flag, ln.count_flag)} ({counted}); the plan "
                                     f"used {amount(ln.on_hand_used, unit)} and orders {packs(ln.qty_packs)}. "
                                     "Recount before approving.")
        # 3. far above the usual order
        u = usual.get(key)
        if ln.qty_packs > 0 and u is not None and np.isfinite(u) and u > 0 and ln.qty_packs > cfg.high_order_ratio * u \
                and ln.qty_packs - u >= cfg.high_order_min_packs:
            add("high_order", f"{name}: {packs(ln.qty_packs)} vs a usual {fmt(round(u, 1))} (median of the last "
                              f"{cfg.usual_order_weeks} weeks). Check the count and the forecast, then keep "
                              f"{packs(ln.qty_packs)} or change it with a reason.")
        # 4. engine review codes on an order day
        codes = [c for c in ln.reason_codes if c in REVIEW_WORDS]
        if ln.is_order_day and codes:
            add("review", f"{name}: " + "; ".join(REVIEW_WORDS[c] for c in codes) + ".")
        # 5. new item: few days of counts, or demand mostly from new products / a new store
        n_days = int(count_days.get(key, 0))
        share = float(new_share.get(key, 0.0))
        if ln.demand_mean > 0 and ((n_days < cfg.new_item_days and not blind) or share >= 0.5):
            why = f"{n_days} days of counts" if n_days < cfg.new_item_days else \
                f"{share:.0%} of its demand comes from new products or a new store"
            add("new_item", f"{name}: {why}; the forecast has little history to learn from. Watch the first "
                            "deliveries.")
    out = _collapse_new_items(out, lines)
    out.sort(key=lambda e: (SEVERITY[e.kind], e.store_id, e.material_id))
    return out


def stockout_action(ln, gap_units: float, unit: str) -> str:
    """What to do about a projected stockout, with a quantity, or why this order cannot help."""
    gap = math.ceil(gap_units - 1e-9) if is_discrete(unit) else gap_units
    shown = amount(gap, unit)
    bridge = (f"Bridge about {shown} until then with an urgent delivery or a transfer."
              if gap_units > 1e-9 and not shown.startswith("0 ") else "Watch the stock until then.")
    arrives = f"{pd.Timestamp(ln.delivery_date):%a %m-%d}"
    if ln.qty_packs > 0:
        return f"This order ({packs(ln.qty_packs)}) arrives {arrives}. {bridge}"
    if not ln.is_order_day:
        return (f"No order today: not an order day for its supplier (next {pd.Timestamp(ln.next_order_day):%a %m-%d},"
                f" delivery {arrives}). {bridge}")
    if "shelf_life_cap" in ln.reason_codes:
        return f"0 packs: an order would expire before it sells (shelf-life cap). {bridge}"
    return f"0 packs: stock and open orders cover the window after the delivery ({arrives}). {bridge}"


def _uncounted_stores(lines: pd.DataFrame, inventory: pd.DataFrame) -> set[int]:
    """Stores whose every line has a missing count and which have no count row at all in the window read."""
    counted = set(inventory["store_id"].astype(int)) if len(inventory) else set()
    missing = lines.groupby("store_id")["count_flag"].agg(lambda f: bool((f == "missing").all()))
    return {int(s) for s, all_missing in missing.items() if all_missing and int(s) not in counted}


def _collapse_new_items(out: list[PlanException], lines: pd.DataFrame, limit: int = 5) -> list[PlanException]:
    """A new store makes every item new: one exception per store instead of a hundred (actionable, not noise)."""
    keep = [e for e in out if e.kind != "new_item"]
    names = lines.set_index(["store_id", "material_id"])["material_name"].to_dict()
    for store in sorted({e.store_id for e in out if e.kind == "new_item"}):
        mine = [e for e in out if e.kind == "new_item" and e.store_id == store]
        if len(mine) <= limit:
            keep += mine
            continue
        some = ", ".join(str(names.get((e.store_id, e.material_id)) or e.material_id) for e in mine[:4])
        keep.append(PlanException(store, 0, "new_item", f"{len(mine)} materials have little history here (e.g. "
                                                         f"{some}): a new store or new items; the forecast leans on "
                                                         "similar stores and products. Watch the first deliveries."))
    return keep


def _new_segment_share(forecasts: pd.DataFrame, bom: pd.DataFrame) -> pd.Series:
    """Share of each store x material's forecast demand coming from ``new_product``/``new_store`` series."""
    if "segment" not in forecasts.columns:
        return pd.Series(dtype=float)
    f = forecasts[["store_id", "product_id", "mean", "segment"]].merge(bom, on="product_id")
    f["m"] = f["mean"] * f["qty_per_unit"]
    f["new"] = f["m"].where(f["segment"].astype(str).str.startswith("new_"), 0.0)
    g = f.groupby(["store_id", "material_id"])[["m", "new"]].sum()
    return (g["new"] / g["m"].where(g["m"] > 0)).fillna(0.0)
