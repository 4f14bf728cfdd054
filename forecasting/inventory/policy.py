"""The (R, S) policy's pure parts: which quantile, what the store really holds, and how a need becomes packs.

Why separate from ``proposal``: each rule here is a small function on numbers and frames that a test can pin down
(count plausibility, inventory position, newsvendor ratio, rounding, MOQ, caps) without sampling or schedules.
Nothing here touches a database; reasons are returned as (code, sentence) pairs so every number can be explained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd

from forecasting.config import ClassPolicy, CountCheckConfig, ReplenishmentConfig

Reason = tuple[str, str]  # (short code, human sentence)
_EPS = 1e-9
GUARD_CODE = "rounded_up_guard"  # the rounding guard added a pack (see ``decide_quantity``)


def _format(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x - round(x)) < 1e-6:
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}".rstrip("0").rstrip(".")


_FMT: dict[float, str] = {}
_FMT_ZERO = {1.0: _format(0.0), -1.0: _format(-0.0)}  # 0.0 == -0.0 as keys, but they format differently


def fmt(x: float) -> str:
    """Compact number for explanations: 3 -> '3', 2.4 -> '2.4', 1234.567 -> '1234.6'.

    Memoised by value (bounded): an API answer formats ~15 numbers a line for ~100 lines, mostly the same ones.
    Exact: equal numbers format alike except the two zeros (kept apart); NaN and None never hit.
    """
    if x is None:
        return "n/a"
    if x == 0:
        return _FMT_ZERO[math.copysign(1.0, x)]
    s = _FMT.get(x)
    if s is None:
        if len(_FMT) >= 65536:
            _FMT.clear()
        s = _FMT[x] = _format(x)
    return s


# --------------------------------------------------------------------------------------------------------------
# Which quantile: service level, or the newsvendor critical ratio for perishables
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaterialPolicy:
    """The resolved settings for one material (class defaults, then the planner's per-material overrides)."""

    policy_class: str
    class_known: bool
    basis: Literal["service_level", "newsvendor"]
    level: float
    underage_cost: float | None
    overage_cost: float | None
    moq_packs: int
    max_stock_units: float | None
    min_level: float = 0.0  # perishables: the class service level as a floor under the newsvendor level


def critical_ratio(underage_cost: float, overage_cost: float) -> float:
    """Newsvendor CR = c_u / (c_u + c_o): the stock-out probability worth accepting when leftovers are wasted."""
    if underage_cost <= 0 or overage_cost < 0:
        raise ValueError("underage cost must be > 0 and overage cost >= 0")
    return underage_cost / (underage_cost + overage_cost)


def resolve_policy(material: dict[str, Any], cfg: ReplenishmentConfig) -> MaterialPolicy:
    """Class: override, ``policy_class`` column, ``supplier_classes``, else ``storage_class``; perishables get the
    newsvendor, with the class service level as a floor (``perishable_service_floor``).

    Underage = lost margin per unit (``underage_cost_ratio`` x unit cost), overage = unit cost - salvage; without a
    unit cost both are taken relative to a cost of 1, which leaves the ratio (all CR depends on) unchanged.
    """
    mid = int(material["material_id"])
    ov = cfg.material_overrides.get(mid)
    sup = material.get("supplier_id")
    by_supplier = cfg.supplier_classes.get(int(sup)) if sup is not None and not pd.isna(sup) else None
    candidates = (ov.policy_class if ov else None, material.get("policy_class"), by_supplier,
                  material.get("storage_class"))
    cls = next((str(c).strip().lower() for c in candidates if c is not None and not pd.isna(c) and str(c).strip()),
               cfg.default_class)
    known = cls in cfg.classes
    cp: ClassPolicy = cfg.classes.get(cls) or cfg.classes.get(cfg.default_class) or ClassPolicy()
    pack = float(material["pack_size"])

    caps = [v for v in (cp.max_stock_units, cp.max_stock_packs * pack if cp.max_stock_packs else None) if v]
    if ov and (ov.max_stock_units or ov.max_stock_packs):
        caps = [v for v in (ov.max_stock_units, ov.max_stock_packs * pack if ov.max_stock_packs else None) if v]
    moq = ov.moq_packs if ov and ov.moq_packs is not None else cp.moq_packs

    if bool(material.get("is_perishable")):
        cost = material.get("unit_cost")
        cost = float(cost) if cost is not None and not pd.isna(cost) and float(cost) > 0 else 1.0
        c_u = ov.underage_cost if ov and ov.underage_cost else cp.underage_cost_ratio * cost
        c_o = ov.overage_cost if ov and ov.overage_cost else cost * (1.0 - cp.salvage_ratio)
        cr = critical_ratio(c_u, c_o)
        floor = (ov.service_level if ov and ov.service_level else cp.service_level) \
            if cfg.perishable_service_floor else 0.0
        return MaterialPolicy(cls, known, "newsvendor", cr, c_u, c_o, moq, min(caps, default=None), floor)
    level = ov.service_level if ov and ov.service_level else cp.service_level
    return MaterialPolicy(cls, known, "service_level", level, None, None, moq, min(caps, default=None))


def carryover_newsvendor(window: np.ndarray, life: np.ndarray, underage_cost: float,
                         overage_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """Order-up-to of a perishable whose leftovers carry over until they expire: per line, the smallest sampled
    level x with c_u P(window demand > x) <= c_o P(demand until expiry < x).

    Why not F^-1(CR) of the window: the single-period newsvendor charges the full overage for every unit left at
    the window end, but a croissant left when the next delivery arrives still sells until its shelf life ends; it
    is wasted only when demand from the order date until the delivery's expiry stays below x. With a shelf life no
    longer than the review period the two windows coincide and this is F^-1(CR). ``window`` and ``life`` are
    joint sample paths (L, n) of the protection-window total and of the total from the order date to the
    expiry of this order's delivery (same draws). Returns the levels (L,) and their quantile levels (L,).
    """
    w = np.sort(np.asarray(window, dtype=float), axis=-1)
    lf = np.sort(np.asarray(life, dtype=float), axis=-1)
    n = w.shape[-1]
    xs, lv = np.empty(len(w)), np.empty(len(w))
    for i in range(len(w)):
        x = w[i]
        short = 1.0 - np.searchsorted(x, x, side="right") / n  # P(window demand > x)
        expire = np.searchsorted(lf[i], x, side="left") / n  # P(demand until expiry < x)
        ok = underage_cost * short <= overage_cost * expire + _EPS
        k = int(np.argmax(ok)) if ok.any() else n - 1
        xs[i], lv[i] = x[k], (np.searchsorted(x, x[k], side="right")) / n
    return xs, lv


# --------------------------------------------------------------------------------------------------------------
# What the store holds: count plausibility and inventory position
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountAssessment:
    """The on hand the policy uses at the end of ``position_date``, and whether the count was trusted."""

    counted: float | None
    count_date: date | None
    on_hand: float
    flag: str  # ok | negative | above_usual_max | jump_up | jump_down | missing | stale
    note: str
    usage_per_day: float
    expected: float | None = None


def daily_usage(dates: list[date], on_hand: np.ndarray, waste: np.ndarray, receipts: dict[date, float]) -> np.ndarray:
    """Per-day consumption between consecutive counts: previous + receipts - current - waste, over the gap."""
    out = []
    for i in range(1, len(dates)):
        gap = (dates[i] - dates[i - 1]).days
        if gap <= 0:
            continue
        rec = sum(q for d, q in receipts.items() if dates[i - 1] < d <= dates[i])
        out.append((on_hand[i - 1] + rec - on_hand[i] - waste[i]) / gap)
    return np.asarray(out, dtype=float)


def assess_count(
    dates: list[date],
    on_hand: np.ndarray | list[float],
    waste: np.ndarray | list[float] | None,
    receipts: dict[date, float] | None,
    position_date: date,
    pack_size: float,
    cfg: CountCheckConfig,
) -> CountAssessment:
    """Walk the recent counts of one store x material, keep the plausible ones, give the on hand at the end of
    ``position_date``.

    A count is implausible when negative, above ``max_ratio`` x the usual maximum, or far from the expected on
    hand (last plausible count - usual usage - waste + receipts) in a way recent usage cannot explain (a x10 unit
    confusion). Implausible or missing counts are replaced by that expectation, never trusted. Usage is the median
    of day-to-day consumption, which one bad count cannot move. ``receipts=None`` means receipts are unknown: jumps
    are then not judged (a delivery would look like one).
    """
    lo = position_date - timedelta(days=cfg.lookback_days)
    w = np.zeros(len(dates)) if waste is None else np.nan_to_num(np.asarray(waste, dtype=float))
    rows = zip(dates, on_hand, w, strict=True)
    keep = sorted((d, float(c), float(x)) for d, c, x in rows if lo <= d <= position_date)
    if not keep:
        note = f"no count in the last {cfg.lookback_days} days: on hand taken as 0"
        return CountAssessment(None, None, 0.0, "missing", note, 0.0)
    rec = receipts or {}
    days = [k[0] for k in keep]
    oh = np.array([k[1] for k in keep])
    wasted = np.array([k[2] for k in keep])
    waste_on = dict(zip(days, wasted, strict=True))
    usage = daily_usage(days, oh, wasted, rec)
    usage = usage[np.isfinite(usage)]
    rate = float(max(np.median(usage), 0.0)) if len(usage) else 0.0

    def expect(base: float, since: date, until: date) -> float:
        """On hand at the end of ``until`` from ``base`` at the end of ``since``: usage, waste, receipts."""
        r = sum(q for d, q in rec.items() if since < d <= until)
        x = sum(q for d, q in waste_on.items() if since < d <= until)
        return max(0.0, base - rate * (until - since).days - x + r)

    # The usual maximum is a high percentile of the window's counts, so one x10 count (even the first) cannot set it.
    valid = oh[oh >= 0]
    usual_max = float(np.percentile(valid, 90, method="lower")) if len(valid) >= 2 else None

    def jump(c: float, exp: float) -> tuple[str, str] | None:
        if receipts is None or rate <= 0:
            return None
        dev = c - exp
        if dev > max(cfg.jump_usage_days * rate, cfg.jump_rel * exp, pack_size):
            return "jump_up", f"count {fmt(c)} jumps from expected {fmt(exp)} (usage {fmt(rate)}/day, no receipt)"
        if c < cfg.jump_low_ratio * exp and -dev > max(cfg.jump_usage_days * rate, pack_size):
            return "jump_down", f"count {fmt(c)} falls from expected {fmt(exp)} (usage {fmt(rate)}/day)"
        return None

    last: tuple[float, date] | None = None  # last plausible count
    pending: tuple[float, date] | None = None  # last count flagged as a jump: a second consistent one confirms it
    flag, note = "ok", ""
    for d, c in zip(days, oh, strict=True):
        exp_d = expect(*last, d) if last else None
        flag, note = "ok", ""
        if c < 0:
            flag, note = "negative", f"count {fmt(c)} is negative"
        elif usual_max is not None and c > cfg.max_ratio * max(usual_max, exp_d or 0.0, pack_size):
            flag, note = "above_usual_max", f"count {fmt(c)} > {fmt(cfg.max_ratio)} x usual max {fmt(usual_max)}"
        elif exp_d is not None:
            flag, note = jump(c, exp_d) or ("ok", "")
            if flag != "ok" and pending is not None and jump(c, expect(*pending, d)) is None:
                flag, note = "ok", ""  # two consecutive consistent counts: the level really moved
        if flag == "ok":
            last, pending = (float(c), d), None
        else:
            pending = (float(c), d) if flag.startswith("jump") else None

    latest_date, latest = days[-1], float(oh[-1])
    expected = expect(*last, latest_date) if last else None
    if flag == "ok":
        base = latest
    elif expected is not None:
        base = expected
        note += f"; used the expected on hand {fmt(base)} instead"
    else:
        base = max(latest, 0.0)
        note += f"; no earlier plausible count, used {fmt(base)}"
    on_hand = base
    if latest_date < position_date:
        on_hand = max(0.0, base - rate * (position_date - latest_date).days
                      + sum(q for d, q in rec.items() if latest_date < d <= position_date))
        gap = (position_date - latest_date).days
        if gap >= cfg.stale_after_days:
            stale = f"latest count is {gap} days old: rolled forward with usage {fmt(rate)}/day to {fmt(on_hand)}"
            flag, note = ("stale", stale) if flag == "ok" else (flag, f"{note}; {stale}")
    return CountAssessment(latest, latest_date, float(on_hand), flag, note, rate, expected)


def batches_on_hand(on_hand: float, receipts: dict[date, float] | None, position_date: date,
                    shelf_life_days: int) -> list[tuple[date | None, float]]:
    """The on hand (end of ``position_date``) as (last day of sale, units) batches, oldest first, by FIFO age.

    What is left is the newest stock: the on hand is matched to the receipts from the newest back (a batch received
    on day r sells on days r .. r + shelf life - 1); stock older than every receipt known is as old as the oldest
    one. Unknown receipts or no shelf life: one batch of unknown age (None).
    """
    if not receipts or shelf_life_days <= 0 or on_hand <= 0:
        return [(None, float(max(on_hand, 0.0)))]
    left, out, last = float(on_hand), [], None
    for day in sorted((d for d in receipts if d <= position_date), reverse=True):
        take = min(left, max(float(receipts[day]), 0.0))
        last = day + timedelta(days=shelf_life_days - 1)
        if take > 0:
            out.append((last, take))
        left -= take
        if left <= _EPS:
            break
    if left > _EPS:
        out.append((last, left))
    return sorted(out, key=lambda b: (b[0] is None, b[0] or date.max))


def usable_on_hand(on_hand: float, receipts: dict[date, float] | None, position_date: date, shelf_life_days: int,
                   delivery_date: date, sells_before: float) -> tuple[float, float]:
    """(usable, expiring): the counted stock that counts in the position, and the part that expires before the
    delivery (its last day of sale comes before ``delivery_date``).

    Why: a count says how much is on the shelf, not how old it is, and a perishable position that counted bagels
    expiring tomorrow as cover for the days after the delivery ordered nothing and stocked out for whole days.
    Stock expiring before the delivery covers at most ``sells_before`` (the median demand from the order date to the
    delivery; FIFO, so it sells first); the rest counts in full. Extending the cap to stock that expires later inside
    the window was measured worse on the replay (the oracle's stockout hours +3%, cost +3%), so it stops here.
    """
    usable = expiring = 0.0
    for expires, qty in batches_on_hand(on_hand, receipts, position_date, shelf_life_days):
        if expires is not None and expires < delivery_date:
            expiring += qty
        else:
            usable += qty
    return usable + min(expiring, max(sells_before, 0.0)), expiring


@dataclass(frozen=True)
class Position:
    """Inventory position IP = on hand (used) + on order arriving before the window ends - committed.

    For perishables ``on_hand`` is the stock that lasts to the delivery plus what the expiring stock sells before it
    (``usable_on_hand``; ``expiring`` holds the whole expiring quantity, for the explanation)."""

    on_hand: float
    on_order: float
    committed: float
    on_order_by_delivery: float  # arriving on or before this order's delivery (fresh stock for the shelf-life cap)
    on_order_after_delivery: float  # arriving after this order's delivery but before the window end
    notes: list[str] = field(default_factory=list)
    expiring: float = 0.0  # counted units that expire before the delivery (``on_hand`` holds only what they sell)

    @property
    def inventory_position(self) -> float:
        return self.on_hand + self.on_order - self.committed


def outstanding_orders(orders: pd.DataFrame | None, position_date: date, closed_statuses: list[str]) -> pd.DataFrame:
    """Orders not yet in the count: unreceived and not closed, or received after the count (arrival = receipt).

    Returns store_id, material_id, arrival (date), qty, overdue (bool).
    """
    cols = ["store_id", "material_id", "arrival", "qty", "overdue"]
    if orders is None or orders.empty:
        return pd.DataFrame(columns=cols)
    pos = pd.Timestamp(position_date)
    expected = pd.to_datetime(orders["expected_delivery"])
    received = (
        pd.to_datetime(orders["received_on"]) if "received_on" in orders else pd.Series(pd.NaT, index=orders.index)
    )
    closed = orders["status"].astype(str).str.lower().isin([s.lower() for s in closed_statuses])
    got = received.notna()
    late_receipt = got & (received > pos)
    open_ = ~got & ~closed
    qty = orders["qty"].astype(float)
    if "received_qty" in orders:
        qty = qty.where(~late_receipt, pd.to_numeric(orders["received_qty"], errors="coerce").fillna(qty))
    out = pd.DataFrame(
        {
            "store_id": orders["store_id"].astype(int),
            "material_id": orders["material_id"].astype(int),
            "arrival": received.where(late_receipt, expected).dt.date,
            "qty": qty,
            "overdue": open_ & (expected <= pos),
        }
    )
    return out[open_ | late_receipt].reset_index(drop=True)


def receipts_by_series(orders: pd.DataFrame | None) -> dict[tuple[int, int], dict[date, float]] | None:
    """Received quantities per (store, material) and day, for usage and expected-on-hand; None if unknown."""
    if orders is None or "received_on" not in orders:
        return None
    o = orders[orders["received_on"].notna()].copy()
    o["received_on"] = pd.to_datetime(o["received_on"]).dt.date
    qty = o["qty"].astype(float)
    o["q"] = pd.to_numeric(o["received_qty"], errors="coerce").fillna(qty) if "received_qty" in o else qty
    out: dict[tuple[int, int], dict[date, float]] = {}
    for (s, m, d), v in o.groupby(["store_id", "material_id", "received_on"])["q"].sum().items():
        out.setdefault((int(s), int(m)), {})[d] = float(v)
    return out


def inventory_position(
    on_hand: float,
    outstanding: pd.DataFrame,
    committed: float,
    delivery_date: date,
    window_end: date,
) -> Position:
    """IP from the used on hand and the outstanding orders of one store x material (arrival < window end)."""
    notes = []
    if outstanding.empty:
        return Position(on_hand, 0.0, committed, 0.0, 0.0, notes)
    arr = outstanding["arrival"]
    inside = arr < window_end
    late = outstanding[~inside]
    if not late.empty:
        notes.append(f"{fmt(late['qty'].sum())} on order arriving after the window end ignored")
    if outstanding.loc[inside, "overdue"].any():
        notes.append(f"{fmt(outstanding.loc[inside & outstanding['overdue'], 'qty'].sum())} overdue on order counted")
    by_delivery = float(outstanding.loc[inside & (arr <= delivery_date), "qty"].sum())
    after = float(outstanding.loc[inside & (arr > delivery_date), "qty"].sum())
    return Position(on_hand, by_delivery + after, committed, by_delivery, after, notes)


# --------------------------------------------------------------------------------------------------------------
# From a need in units to whole packs: shelf-life cap, rounding threshold, MOQ, storage capacity
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantityDecision:
    need_units: float  # max(0, S - IP)
    qty_packs: int
    qty_units: float
    reasons: list[Reason]


def round_packs(units: float, pack_size: float, threshold: float) -> tuple[int, float]:
    """Whole packs: floor, plus one when the fractional pack >= ``threshold`` (SAP F&R style). Returns (packs, raw)."""
    raw = max(units, 0.0) / pack_size
    whole = math.floor(raw + _EPS)
    frac = raw - whole
    return whole + (1 if frac > _EPS and frac >= threshold - _EPS else 0), raw


def decide_quantity(
    order_up_to: float,
    inventory_position: float,
    pack_size: float,
    threshold: float,
    *,
    moq_packs: int = 0,
    shelf_cap_units: float | None = None,
    shelf_cap_days: float | None = None,
    room_units: float | None = None,
    floor_units: float | None = None,
    floor_label: str = "a median need of",
    critical_ratio: float | None = None,
) -> QuantityDecision:
    """q = max(0, S - IP), capped by shelf life, rounded to packs, raised to the MOQ, capped by storage room.

    Rounding guard (``floor_units``): a fractional pack below the threshold is not rounded away when that would
    leave the position after ordering below the floor; with packs much larger than a window's demand (2,000 sugar
    packets for 180 a week) the threshold alone would round to zero on every order day and the store would run
    dry. The proposal passes S for shelf-stable lines (rounding below the service-level target saves only holding
    cost) and the window's median need for perishables. The guard adds the fewest packs that reach the floor,
    never more than the need rounded up; the shelf-life, MOQ and storage rules below still apply.

    The shelf-life cap is hard (the order never exceeds what the median sells before expiry), so rounding up or
    the MOQ never push past it; when they would, the line orders less or nothing and says so. One exception
    (``critical_ratio``, perishables): the first pack is allowed even when it exceeds the median sales before
    expiry, if its expected margin is positive, i.e. it sells more than the share 1 - CR = c_o / (c_u + c_o) of
    itself before expiry (a coffee shop still stocks one tray of bagels when a day and a half sells five of six).
    """
    if pack_size <= 0:
        raise ValueError("pack_size must be > 0")
    reasons: list[Reason] = []
    need = max(0.0, order_up_to - inventory_position)
    if need <= _EPS:
        reasons.append(("covered", f"position {fmt(inventory_position)} covers order-up-to {fmt(order_up_to)}"))
        return QuantityDecision(0.0, 0, 0.0, reasons)
    units = need
    hard_cap = shelf_cap_units
    if shelf_cap_units is not None and units > shelf_cap_units + _EPS:
        units = max(shelf_cap_units, 0.0)
        plural = "" if shelf_cap_days is not None and abs(shelf_cap_days - 1) < 0.05 else "s"
        days = f": {fmt(shelf_cap_days)} day{plural} of median sales" if shelf_cap_days is not None else ""
        reasons.append(("shelf_life_cap", f"capped by shelf life{days} ({fmt(need)} -> {fmt(units)} units)"))
    packs, raw = round_packs(units, pack_size, threshold)
    if abs(raw - round(raw)) > _EPS and raw > _EPS:
        direction = "up" if packs > raw else "down"
        text = f"rounded {direction} {fmt(raw)} -> {packs} pack{'' if packs == 1 else 's'} (threshold {fmt(threshold)})"
        reasons.append((f"rounded_{direction}", text))
        after = inventory_position + packs * pack_size
        if direction == "down" and floor_units is not None and after < floor_units - _EPS:
            top = math.ceil(need / pack_size - _EPS)
            guarded = min(packs + max(1, math.ceil((floor_units - after) / pack_size - _EPS)), top)
            if guarded > packs:
                reasons.append((GUARD_CODE, f"rounded up to {guarded} pack{'' if guarded == 1 else 's'}: rounding "
                                            f"down would leave {fmt(after)} below {floor_label} {fmt(floor_units)}"))
                packs = guarded
    cap_packs = None if hard_cap is None else max(math.floor(hard_cap / pack_size + _EPS), 0)
    first_pack = (cap_packs == 0 and critical_ratio is not None and hard_cap is not None
                  and hard_cap > (1.0 - critical_ratio) * pack_size + _EPS)
    if first_pack:
        cap_packs = 1
    if cap_packs is not None and packs > cap_packs:
        if cap_packs == 0:
            reasons.append(("case_cover", f"one pack ({fmt(pack_size)}) is more than the median sells before expiry "
                                          f"({fmt(hard_cap)} after stock on hand): no order, review the pack size"))
        elif not first_pack:
            reasons.append(("shelf_life_cap", f"rounding kept under the shelf-life cap: {packs} -> {cap_packs} packs"))
        packs = cap_packs
    if first_pack and packs == 1:
        reasons.append(("first_pack", f"one pack ({fmt(pack_size)}) is more than the median sells before expiry "
                                      f"({fmt(hard_cap)}) but its expected margin is positive (it sells over "
                                      f"{fmt(100 * (1.0 - critical_ratio))}% of itself at CR {fmt(critical_ratio)})"))
    room_packs = None if room_units is None else max(math.floor(max(room_units, 0.0) / pack_size + _EPS), 0)
    if 0 < packs < moq_packs:
        limit = min([x for x in (cap_packs, room_packs) if x is not None], default=None)
        if limit is not None and limit < moq_packs:
            reasons.append(("moq_blocked", f"{packs} packs is below the MOQ of {moq_packs} and the MOQ does not fit "
                                           f"(shelf life / storage allows {limit}): no order, review"))
            packs = 0
        else:
            reasons.append(("moq", f"raised to the MOQ: {packs} -> {moq_packs} packs"))
            packs = moq_packs
    if room_packs is not None and packs > room_packs:
        reasons.append(("capacity_cap", f"capped by storage capacity: {packs} -> {room_packs} packs "
                                        f"(room for {fmt(room_units)} units)"))
        packs = room_packs
        if 0 < packs < moq_packs:
            reasons.append(("moq_blocked", f"storage room ({packs} packs) is below the MOQ of {moq_packs}: no order"))
            packs = 0
    packs = max(int(packs), 0)
    return QuantityDecision(need, packs, packs * pack_size, reasons)
