"""The planners' daily proposal: one explained line per store x material, from forecasts and the source tables.

Why one function over plain frames: the CLI, the API and the policy simulation all call ``propose`` with what they
read (the ``t_*`` source contract, see ``forecasting.source.schema``) and the models' forecasts (contract in
``forecasting.inventory.material_demand``); nothing here reads a database, so the same numbers come out everywhere.

Per line: periodic review, order-up-to. S = the chosen quantile of material demand over the protection window
[order date, the delivery after this order's delivery) computed from joint sample paths; the quantile is the class
service level, or the newsvendor critical ratio for perishables (with leftovers selling until they expire:
``policy.carryover_newsvendor``; then also capped by what the median sells before expiry, one pack at least when its
expected margin is positive). q = max(0, S - IP), rounded to packs (never below S for shelf-stable lines, the median
need for perishables), raised to the MOQ, capped by storage room.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from forecasting.config import ReplenishmentConfig
from forecasting.errors import DataError
from forecasting.inventory.material_demand import (
    MaterialSamples,
    draw_product_samples,
    material_samples,
    sample_quantile,
    validate_forecasts,
    window_totals,
)
from forecasting.inventory.policy import (
    CountAssessment,
    MaterialPolicy,
    Position,
    Reason,
    assess_count,
    carryover_newsvendor,
    decide_quantity,
    fmt,
    inventory_position,
    outstanding_orders,
    receipts_by_series,
    resolve_policy,
    usable_on_hand,
)
from forecasting.inventory.schedule import WEEKDAY_NAMES, DeliverySchedule, OrderWindow, order_window

REVIEW_CODES = frozenset({"case_cover", "moq_blocked", "forecast_short", "unknown_class", "no_shelf_life"})


class ProposalLine(BaseModel):
    """One proposed order line with everything a planner needs to accept, change or reject it (the API payload)."""

    model_config = ConfigDict(frozen=True)

    store_id: int
    material_id: int
    material_name: str | None = None
    supplier_id: int
    unit: str | None = None
    order_date: date
    effective_order_date: date  # the next day when the supplier's cutoff has passed
    is_order_day: bool
    next_order_day: date
    delivery_date: date
    next_delivery_date: date  # end of the protection window (exclusive)
    qty_units: float
    qty_packs: int
    pack_size: float
    order_value: float | None = None
    window_days: int
    lead_days: int
    review_days: int
    policy_class: str
    quantile_basis: Literal["service_level", "newsvendor"]
    quantile_level: float
    demand_mean: float
    demand_median: float
    demand_quantile: float
    safety_stock: float  # quantile - median
    order_up_to: float  # S
    inventory_position: float
    on_hand_counted: float | None
    count_date: date | None
    on_hand_used: float
    on_order: float
    committed: float
    count_flag: str  # ok | negative | above_usual_max | jump_up | jump_down | missing | stale
    need_units: float  # max(0, S - IP) before caps and rounding
    shelf_life_cap_units: float | None = None
    reason_codes: list[str]
    explanation: str
    needs_review: bool
    model_version: str
    data_date: date
    # The planner's side, beside the engine's qty_packs: the final number is the planner's where overridden (the
    # stored proposal of this store and date), else the engine's.
    final_packs: int | None = None
    planner_packs: int | None = None
    override_reason: str | None = None
    proposal_status: str | None = None  # draft | approved | released | cancelled (None: no stored proposal)


def _require(frame: pd.DataFrame, name: str, cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: missing columns {missing}")


def _windows(
    suppliers: pd.DataFrame, order_date: date, order_time: time | None
) -> dict[int, tuple[DeliverySchedule, OrderWindow]]:
    out = {}
    for row in suppliers.itertuples(index=False):
        sched = DeliverySchedule.from_supplier(row.delivery_weekdays, row.order_cutoff, row.lead_time_days)
        out[int(row.supplier_id)] = (sched, order_window(sched, order_date, order_time))
    return out


def _totals(
    ms: MaterialSamples, starts: list[date], ends: list[date]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Window totals (S, M, N) scaled up to the full window when the forecast covers only part of it.

    Returns totals, exact means (S, M), days wanted and days covered (M,).
    """
    s_idx = np.array([ms.day_index(d) for d in starts])
    e_idx = np.array([ms.day_index(d) for d in ends])
    wanted = np.maximum(e_idx - s_idx, 0)
    tot, covered = window_totals(ms, s_idx, e_idx)
    T = len(ms.dates)
    cum = np.concatenate([np.zeros(ms.mean.shape[:2] + (1,)), np.cumsum(ms.mean, axis=2)], axis=2)
    lo, hi = np.clip(s_idx, 0, T), np.clip(np.maximum(e_idx, s_idx), 0, T)
    m_idx = np.arange(len(ms.material_ids))
    mean = cum[:, m_idx, hi] - cum[:, m_idx, lo]
    scale = np.where((covered > 0) & (covered < wanted), wanted / np.maximum(covered, 1), 1.0)
    return tot * scale[None, :, None], mean * scale[None, :], wanted, covered


def _late_paths(ms: MaterialSamples, prot: np.ndarray, pols: list[MaterialPolicy], wins: list[OrderWindow],
                config: ReplenishmentConfig) -> np.ndarray:
    """Protection-window totals (S, M, N) with a late next delivery priced for perishables: on a share
    ``late_delivery_rate`` of the sample paths (seeded per store x material) the window runs one day
    longer, so the stock this order must hold covers that day too.

    Why only perishables: their level is a newsvendor trade-off the miss shifts (a late bakery truck empties the
    shelf for a day); shelf-stable materials hold days of stock at 0.998 that a one-day slip does not reach.
    """
    rate = config.late_delivery_rate
    perish = np.array([p.basis == "newsvendor" for p in pols])
    if rate <= 0 or not perish.any():
        return prot
    ends = [w.window_end for w in wins]
    extra, _, _, _ = _totals(ms, ends, [e + timedelta(days=1) for e in ends])
    late = np.zeros(prot.shape, dtype=bool)
    for si, s in enumerate(ms.store_ids):  # keyed by store x material: a store's line is the same whichever stores
        for mi in np.nonzero(perish)[0]:  # are proposed with it (the API's one store, the plan's all)
            late[si, mi] = np.random.default_rng([config.seed, 17, int(s), int(ms.material_ids[mi])]).random(
                prot.shape[-1]) < rate
    return prot + np.where(late, extra, 0.0)


def _series_index(frame: pd.DataFrame) -> dict[tuple[int, int], np.ndarray]:
    if frame is None or frame.empty:
        return {}
    groups = frame.groupby(["store_id", "material_id"], sort=False).indices
    return {(int(k[0]), int(k[1])): v for k, v in groups.items()}


@dataclass(frozen=True)
class WindowDemand:
    """The batch half of a proposal for one order date: per store x material, the window-demand figures a line needs.

    Why: drawing sample paths is the slow part and depends only on the forecasts, the master data and the order
    date, not on what the store holds; the API precomputes one of these per order date at load and a request only
    applies the policy (``line_for``). ``upper`` keeps the sorted upper half of the protection-window totals so any
    service level >= 0.5 is answered exactly (same ``sample_quantile`` rule) without the samples.
    """

    order_date: date
    order_time: time | None
    store_ids: np.ndarray  # (S,)
    material_ids: np.ndarray  # (M,)
    rows: list[dict]  # material master rows, in material_ids order
    pols: list[MaterialPolicy]
    wins: list[OrderWindow]
    cutoffs: list[time]  # the supplier's order cutoff per material
    shelf: list[int]  # shelf life in days (0 = no expiry cap)
    prot_mean: np.ndarray  # (S, M) exact mean demand over the protection window
    q_level: np.ndarray  # (S, M) quantile at the material's configured level (carry-over newsvendor: its level)
    eff_level: np.ndarray  # (S, M) the quantile level of q_level (the configured one, or the carry-over optimum)
    q_median: np.ndarray  # (S, M)
    pre_median: np.ndarray  # (S, M) median demand from the order date to the delivery
    shelf_median: np.ndarray  # (S, M) median demand over the shelf life after delivery
    prot_days: np.ndarray  # (M,) window days wanted
    prot_cov: np.ndarray  # (M,) window days the forecast covers
    shelf_days: np.ndarray  # (M,)
    shelf_cov: np.ndarray  # (M,)
    n_samples: int = 0
    upper: np.ndarray | None = None  # (S, M, K): sorted window totals from rank ceil(n/2)-1 up (~4 kB a line)
    single: np.ndarray | None = None  # (M,) the material goes into one forecast product only (None: unknown)
    memo: dict = field(default_factory=dict, repr=False, compare=False)  # line statics by (si, mi, level)

    def store_index(self, store_id: int) -> int | None:
        i = int(np.searchsorted(self.store_ids, store_id))
        return i if i < len(self.store_ids) and int(self.store_ids[i]) == int(store_id) else None

    def for_store(self, si: int) -> WindowDemand:
        """The same figures for one store (index ``si``): a cheap view, e.g. to propose for that store only."""
        sl = slice(si, si + 1)
        return replace(
            self, store_ids=self.store_ids[sl], prot_mean=self.prot_mean[sl], q_level=self.q_level[sl],
            eff_level=self.eff_level[sl],
            q_median=self.q_median[sl], pre_median=self.pre_median[sl], shelf_median=self.shelf_median[sl],
            upper=None if self.upper is None else self.upper[sl], memo={},
        )

    def quantile(self, si: int, mi: int, level: float) -> float:
        """Window-demand quantile at ``level`` (>= 0.5) for one line, as ``sample_quantile`` gives on the samples."""
        if self.upper is None:
            raise DataError("window demand was precomputed without the quantile table")
        n = self.n_samples
        k = min(max(int(np.ceil(level * n - 1e-9)) - 1, 0), n - 1) - (n - self.upper.shape[-1])
        if k < 0:
            raise DataError(f"service level {level} is below 0.5")
        return float(self.upper[si, mi, k])


def precompute_window_demand(
    forecasts: pd.DataFrame,
    materials: pd.DataFrame,
    bom: pd.DataFrame,
    suppliers: pd.DataFrame,
    order_date: date,
    config: ReplenishmentConfig,
    *,
    order_time: time | None = None,
    keep_quantiles: bool = False,
) -> WindowDemand:
    """The demand side of ``propose`` for ``order_date``: windows, policies and window-demand quantiles.

    ``keep_quantiles`` also keeps the sorted upper half of the window totals (for a per-request service level).
    """
    _require(materials, "materials", ("material_id", "pack_size", "is_perishable", "storage_class", "supplier_id"))
    _require(suppliers, "suppliers", ("supplier_id", "lead_time_days", "delivery_weekdays", "order_cutoff"))
    fc = validate_forecasts(forecasts)
    order_date = pd.Timestamp(order_date).date()

    # Materials in play: used by a forecast product's recipe.
    used = bom[bom["product_id"].isin(fc["product_id"].unique())]
    mat = materials.drop_duplicates("material_id").set_index("material_id", drop=False)
    unknown = sorted(set(used["material_id"]) - set(mat.index))
    if unknown:
        raise DataError(f"bom uses materials missing from materials: {unknown[:10]}")
    if (mat["pack_size"].astype(float) <= 0).any():
        raise DataError("materials: pack_size must be > 0")
    windows = _windows(suppliers, order_date, order_time)
    no_supplier = sorted(set(mat.loc[mat.index.isin(used["material_id"]), "supplier_id"].astype(int)) - set(windows))
    if no_supplier:
        raise DataError(f"materials reference unknown suppliers: {no_supplier[:10]}")

    material_ids = np.sort(used["material_id"].unique())
    if len(material_ids) == 0:
        raise DataError("no forecast product has a recipe (bom) row: nothing to replenish")
    rows = [mat.loc[m].to_dict() for m in material_ids]
    pols: list[MaterialPolicy] = [resolve_policy(r, config) for r in rows]
    wins = [windows[int(r["supplier_id"])][1] for r in rows]
    cutoffs = [windows[int(r["supplier_id"])][0].cutoff for r in rows]
    shelf = [
        int(r["shelf_life_days"]) if bool(r["is_perishable"]) and pd.notna(r.get("shelf_life_days"))
        and int(r["shelf_life_days"]) > 0 else 0
        for r in rows
    ]
    shelf_end = [w.delivery_date + timedelta(days=sl) for w, sl in zip(wins, shelf, strict=True)]
    last_day = max([w.window_end for w in wins] + shelf_end) - timedelta(days=1)

    first, last = fc["date"].min().date(), fc["date"].max().date()
    if first > order_date or last < order_date:
        raise DataError(f"forecasts ({first} to {last}) do not cover the protection window from {order_date}")
    ps = draw_product_samples(fc, config.n_samples, config.seed, start=order_date, end=last_day)
    ms = material_samples(ps, bom, material_ids)

    prot, prot_mean, prot_days, prot_cov = _totals(ms, [w.window_start for w in wins], [w.window_end for w in wins])
    if (prot_cov == 0).any():
        bad = material_ids[prot_cov == 0][:10].tolist()
        raise DataError(f"forecasts do not cover the protection window from {order_date} (materials {bad})")
    prot = _late_paths(ms, prot, pols, wins, config)
    pre, _, _, _ = _totals(ms, [order_date] * len(wins), [w.delivery_date for w in wins])
    shelf_tot, _, shelf_days, shelf_cov = _totals(ms, [w.delivery_date for w in wins], shelf_end)

    levels = np.array([p.level for p in pols])
    q_level = sample_quantile(prot, levels[None, :])  # (S, M)
    eff_level = np.repeat(levels[None, :], len(ms.store_ids), axis=0)
    carry = [mi for mi, (p, w, e) in enumerate(zip(pols, wins, shelf_end, strict=True))
             if p.basis == "newsvendor" and shelf[mi] > 0 and e > w.window_end and config.perishable_carryover]
    if carry:  # leftovers still sell until they expire: the newsvendor over the window up to the expiry
        life_tot, _, _, _ = _totals(ms, [order_date] * len(wins), shelf_end)
        for mi in carry:
            q_level[:, mi], eff_level[:, mi] = carryover_newsvendor(
                prot[:, mi, :], life_tot[:, mi, :], pols[mi].underage_cost, pols[mi].overage_cost)
    floors = np.array([p.min_level if p.basis == "newsvendor" else 0.0 for p in pols])
    if (floors > 0).any():  # perishables: the class service level is a floor under the newsvendor level
        up = floors[None, :] > eff_level + 1e-12
        q_level = np.where(up, np.maximum(q_level, sample_quantile(prot, floors[None, :])), q_level)
        eff_level = np.where(up, floors[None, :], eff_level)
    n = prot.shape[-1]
    upper = None
    if keep_quantiles:
        k0 = max(int(np.ceil(0.5 * n - 1e-9)) - 1, 0)
        upper = np.sort(prot, axis=-1)[..., k0:]
    single = used.groupby("material_id")["product_id"].nunique().reindex(material_ids).to_numpy() <= 1
    return WindowDemand(
        single=single,
        order_date=order_date,
        order_time=order_time,
        store_ids=ms.store_ids,
        material_ids=material_ids,
        rows=rows,
        pols=pols,
        wins=wins,
        cutoffs=cutoffs,
        shelf=shelf,
        prot_mean=prot_mean,
        q_level=q_level,
        eff_level=eff_level,
        q_median=sample_quantile(prot, 0.5),
        pre_median=sample_quantile(pre, 0.5),
        shelf_median=sample_quantile(shelf_tot, 0.5),
        prot_days=prot_days,
        prot_cov=prot_cov,
        shelf_days=shelf_days,
        shelf_cov=shelf_cov,
        n_samples=n,
        upper=upper,
    )


@dataclass(frozen=True)
class _LineStatic:
    """What a line's figures and text need that does not depend on the store's holdings (memoised per line)."""

    store: int
    mid: int
    pol: MaterialPolicy
    S: float
    med: float
    pre_med: float
    shelf_sales: float | None  # median sales over the shelf life (perishables with a shelf life)
    shelf_days: int
    pack: float
    pack_txt: str
    unit: str | None
    name: str | None
    cost: float | None
    supplier_id: int
    demand_mean: float
    perishable: bool
    head_reasons: list[Reason]  # unknown class, forecast short, shelf-life notes (after count and on-order notes)
    tail_reasons: list[Reason]  # not an order day / cutoff passed (after the quantity's reasons)
    window_txt: str  # "{window}-day window (...) needs median ..., q.. ..; safety stock .."
    fields: dict  # every line field in model order; those that depend on the holdings are None


def _line_static(wd: WindowDemand, si: int, mi: int, config: ReplenishmentConfig,
                 service_level: float | None) -> _LineStatic:
    pol = wd.pols[mi]
    custom = service_level is not None and pol.basis == "service_level" and service_level != pol.level
    key = (si, mi, float(service_level) if custom else None)
    hit = wd.memo.get(key)
    if hit is not None:
        return hit
    r, win = wd.rows[mi], wd.wins[mi]
    S = float(wd.q_level[si, mi])
    if custom:
        pol = replace(pol, level=float(service_level))
        S = wd.quantile(si, mi, pol.level)
    med = float(wd.q_median[si, mi])
    head: list[Reason] = []
    if not pol.class_known:
        head.append(("unknown_class", f"class {pol.policy_class!r} not configured: used "
                                      f"{config.default_class!r} settings"))
    if wd.prot_cov[mi] < wd.prot_days[mi]:
        head.append(("forecast_short", f"forecast covers {wd.prot_cov[mi]} of {wd.prot_days[mi]} window days: "
                                       "scaled up"))
    perishable = bool(r["is_perishable"])
    shelf_sales = None
    if perishable:
        if wd.shelf[mi] > 0:
            shelf_sales = float(wd.shelf_median[si, mi])
            if wd.shelf_cov[mi] < wd.shelf_days[mi]:
                head.append(("shelf_forecast_short", f"forecast covers {wd.shelf_cov[mi]} of {wd.shelf[mi]} "
                                                     "shelf-life days: sales before expiry extrapolated"))
        else:
            head.append(("no_shelf_life", "perishable without a shelf life: no expiry cap"))
    tail: list[Reason] = []
    if not win.is_order_day:
        nxt = win.next_order_day
        tail.append(("not_order_day", f"not an order day: next order day {WEEKDAY_NAMES[nxt.weekday()]} "
                                      f"{nxt.isoformat()}"))
    if wd.order_time is not None and win.effective_order_date > wd.order_date:
        tail.append(("cutoff_passed", f"after the {wd.cutoffs[mi]:%H:%M} cutoff: "
                                      f"counts as ordered {win.effective_order_date.isoformat()}"))
    basis = "service level" if pol.basis == "service_level" else "newsvendor CR"
    lvl = pol.level if custom else float(wd.eff_level[si, mi])
    if abs(lvl - pol.level) > 1e-9:
        basis = "carry-over until expiry, newsvendor CR"
        if pol.basis == "newsvendor" and pol.min_level > 0 and abs(lvl - pol.min_level) < 1e-9:
            basis = f"class service-level floor {fmt(pol.min_level)} over the newsvendor CR"
    cost = r.get("unit_cost")
    pack = float(r["pack_size"])
    unit = str(r["unit"]) if pd.notna(r.get("unit")) else None
    name = str(r["material_name"]) if pd.notna(r.get("material_name")) else None
    # Every ProposalLine field in model order, typed as the model holds them; the holdings-dependent ones (None
    # here) are filled per line by ``line_fields`` on a copy, which keeps this order.
    fields = dict.fromkeys(ProposalLine.model_fields)
    fields.update(
        store_id=int(wd.store_ids[si]), material_id=int(wd.material_ids[mi]), material_name=name,
        supplier_id=int(r["supplier_id"]), unit=unit, order_date=wd.order_date,
        effective_order_date=win.effective_order_date, is_order_day=bool(win.is_order_day),
        next_order_day=win.next_order_day, delivery_date=win.delivery_date,
        next_delivery_date=win.next_delivery_date, pack_size=pack, window_days=int(win.window_days),
        lead_days=int(win.lead_days), review_days=int(win.review_days), policy_class=str(pol.policy_class),
        quantile_basis=pol.basis, quantile_level=float(lvl), demand_mean=float(wd.prot_mean[si, mi]),
        demand_median=med, demand_quantile=S, safety_stock=S - med, order_up_to=S,
    )
    st = _LineStatic(
        store=int(wd.store_ids[si]),
        mid=int(wd.material_ids[mi]),
        pol=pol,
        S=S,
        med=med,
        pre_med=float(wd.pre_median[si, mi]),
        shelf_sales=shelf_sales,
        shelf_days=wd.shelf[mi],
        pack=pack,
        pack_txt=fmt(pack),
        unit=unit,
        name=name,
        cost=float(cost) if cost is not None and pd.notna(cost) else None,
        supplier_id=int(r["supplier_id"]),
        demand_mean=float(wd.prot_mean[si, mi]),
        perishable=perishable,
        head_reasons=head,
        tail_reasons=tail,
        window_txt=(f"{win.window_days}-day window ({win.lead_days} to delivery + {win.review_days} to the next) "
                    f"needs median {fmt(med)}, q{fmt(100 * lvl)} {fmt(S)} ({basis} {fmt(pol.level)}); "
                    f"safety stock {fmt(S - med)}"),
        fields=fields,
    )
    if len(wd.memo) < 200_000:  # bounded: arbitrary per-request service levels must not grow it without end
        wd.memo[key] = st
    return st


def line_fields(
    wd: WindowDemand,
    si: int,
    mi: int,
    count: CountAssessment,
    pos: Position,
    config: ReplenishmentConfig,
    model_version: str,
    data_date: date,
    *,
    service_level: float | None = None,
) -> dict:
    """``line_for``'s line as a plain dict in ``ProposalLine`` field order, with the types the model would hold.

    Why: the API serialises these dicts directly (``pydantic_core.to_json`` gives the bytes of
    ``ProposalLine.model_dump_json``) and so skips validating ~45 fields of lines it has just built itself.
    """
    st = _line_static(wd, si, mi, config, service_level)
    win, pol, S, pack = wd.wins[mi], st.pol, st.S, st.pack
    reasons: list[Reason] = []
    if count.flag != "ok":
        reasons.append((f"count_{count.flag}", count.note))
    reasons += [("on_order", n) for n in pos.notes]
    if pos.expiring > 0:
        gone = min(pos.expiring, count.on_hand)  # never more than what is on hand
        reasons.append(("expiring", f"of the {fmt(count.on_hand)} on hand, {fmt(gone)} expires before the delivery:"
                                    f" it counts only up to the median sales until then ({fmt(pos.on_hand)} in the "
                                    "position)"))
    reasons += st.head_reasons
    ip = pos.inventory_position

    # Stock expected at delivery (median), for the shelf-life cap and the storage room.
    at_delivery = max(0.0, pos.on_hand + pos.on_order_by_delivery - st.pre_med)
    shelf_cap = shelf_cap_days = None
    if st.shelf_sales is not None:
        sales = st.shelf_sales
        shelf_cap = max(0.0, sales - at_delivery - pos.on_order_after_delivery)
        daily = sales / st.shelf_days if sales > 0 else 0.0
        shelf_cap_days = shelf_cap / daily if daily > 0 else 0.0
    room = None if pol.max_stock_units is None else pol.max_stock_units - at_delivery
    # A perishable sold as one product rounds to the nearest pack: its stockout blocks no other product, so its own
    # newsvendor S prices it; a shared one (milk) rounds up earlier, as a short pack blocks every drink it goes into.
    single = pol.basis == "newsvendor" and wd.single is not None and bool(wd.single[mi])
    decision = decide_quantity(
        S, ip, pack, config.rounding_threshold_single if single else config.rounding_threshold,
        moq_packs=pol.moq_packs, shelf_cap_units=shelf_cap, shelf_cap_days=shelf_cap_days, room_units=room,
        # Rounding guard: shelf-stable lines never round below S (an extra pack only costs holding), perishables
        # never below the median need (the threshold still saves a partial pack that might expire).
        floor_units=(S if pol.basis == "service_level" else st.med) if config.rounding_guard else None,
        floor_label="the order-up-to" if pol.basis == "service_level" else "a median need of",
        critical_ratio=pol.level if pol.basis == "newsvendor" else None,
    )
    packs = decision.qty_packs
    if win.is_order_day:
        reasons += decision.reasons
    else:
        packs = 0
    reasons += st.tail_reasons
    qty = packs * pack
    unit = st.unit
    codes = list(dict.fromkeys([c for c, _ in reasons]))
    plural = "" if packs == 1 else "s"
    head = f"Order {packs} pack{plural} ({fmt(qty)} {unit or 'units'})" if packs else "No order"
    explanation = (
        f"{head}: {st.window_txt}; position {fmt(ip)} = on hand {fmt(pos.on_hand)} + on order "
        f"{fmt(pos.on_order)} - committed {fmt(pos.committed)}; need {fmt(decision.need_units)} "
        f"= {fmt(decision.need_units / pack)} packs of {st.pack_txt}"
        + "".join([f"; {t}" for _, t in reasons])
        + "."
    )
    line = st.fields.copy()
    line["qty_units"] = float(qty)
    line["qty_packs"] = int(packs)
    line["order_value"] = float(qty * st.cost) if st.cost is not None else None
    line["inventory_position"] = float(ip)
    line["on_hand_counted"] = None if count.counted is None else float(count.counted)
    line["count_date"] = count.count_date
    line["on_hand_used"] = float(pos.on_hand)
    line["on_order"] = float(pos.on_order)
    line["committed"] = float(pos.committed)
    line["count_flag"] = count.flag
    line["need_units"] = float(decision.need_units)
    line["shelf_life_cap_units"] = None if shelf_cap is None else float(shelf_cap)
    line["reason_codes"] = codes
    line["explanation"] = explanation
    # Exceptions a planner must look at; on a non-order day only the count matters.
    line["needs_review"] = bool(count.flag != "ok" or (win.is_order_day and REVIEW_CODES.intersection(codes)))
    line["model_version"] = model_version
    line["data_date"] = data_date
    line["final_packs"] = int(packs)
    return line


def line_for(
    wd: WindowDemand,
    si: int,
    mi: int,
    count: CountAssessment,
    pos: Position,
    config: ReplenishmentConfig,
    model_version: str,
    data_date: date,
    *,
    service_level: float | None = None,
) -> ProposalLine:
    """The per-request half: one explained line from precomputed window demand and what the store holds.

    ``service_level`` (>= 0.5) replaces the configured level of service-level materials; newsvendor lines keep
    their critical ratio (it is a cost trade-off, not a service target). Everything that does not depend on the
    holdings (quantiles, texts) is memoised on ``wd``, so a repeated line costs little more than the arithmetic.
    """
    return ProposalLine(**line_fields(wd, si, mi, count, pos, config, model_version, data_date,
                                      service_level=service_level))


def propose(
    forecasts: pd.DataFrame,
    materials: pd.DataFrame,
    bom: pd.DataFrame,
    suppliers: pd.DataFrame,
    inventory: pd.DataFrame,
    order_date: date,
    config: ReplenishmentConfig,
    model_version: str,
    data_date: date,
    *,
    orders: pd.DataFrame | None = None,
    committed: pd.DataFrame | None = None,
    order_time: time | None = None,
    window_demand: WindowDemand | None = None,
) -> list[ProposalLine]:
    """Order proposal for ``order_date`` (ordering at ``order_time``; None = before every cutoff).

    Inputs are frames shaped like the source tables: ``materials`` (t_material, optionally ``material_name`` and
    ``policy_class``), ``bom`` (t_bom), ``suppliers`` (t_supplier), ``inventory`` (t_inventory_snapshot history,
    a few weeks), ``orders`` (t_replenishment_order: open orders and recent receipts; None = unknown),
    ``committed`` (store_id, material_id, committed_qty). Counts are taken as end-of-day, so the position is at the
    end of the day before ``order_date`` and the window's demand starts on ``order_date``.

    One line per store with a forecast x material used by its recipes (or counted there); zero lines explain why.
    ``window_demand`` (from ``precompute_window_demand`` for the same inputs and date) skips the sampling.
    """
    _require(inventory, "inventory", ("store_id", "material_id", "snapshot_date", "on_hand_qty"))
    wd = window_demand or precompute_window_demand(
        forecasts, materials, bom, suppliers, order_date, config, order_time=order_time
    )
    data_date = pd.Timestamp(data_date).date()
    held = positions(wd, inventory, config, orders=orders, committed=committed)
    return [line_for(wd, si, mi, c, p, config, model_version, data_date) for (si, mi), (c, p) in held.items()]


def positions(
    wd: WindowDemand,
    inventory: pd.DataFrame,
    config: ReplenishmentConfig,
    *,
    orders: pd.DataFrame | None = None,
    committed: pd.DataFrame | None = None,
) -> dict[tuple[int, int], tuple[CountAssessment, Position]]:
    """What each store holds, per (store index, material index) of ``wd`` that gets a line, in line order.

    The count is checked for plausibility (``assess_count``) and the position taken at the end of the day before
    the order date; the API caches this per store between reads of the source.
    """
    _require(inventory, "inventory", ("store_id", "material_id", "snapshot_date", "on_hand_qty"))
    position_date = wd.order_date - timedelta(days=1)
    # Counts, receipts, open orders, commitments: indexed by (store, material) once.
    inv = inventory.copy()
    inv["snapshot_date"] = pd.to_datetime(inv["snapshot_date"]).dt.date
    inv_idx = _series_index(inv)
    inv_dates = inv["snapshot_date"].to_numpy()
    inv_oh = inv["on_hand_qty"].to_numpy(dtype=float)
    inv_waste = inv["waste_qty"].to_numpy(dtype=float) if "waste_qty" in inv else np.zeros(len(inv))
    receipts = receipts_by_series(orders)
    out = outstanding_orders(orders, position_date, config.closed_order_statuses)
    out_idx = _series_index(out)
    commit = {}
    if committed is not None and not committed.empty:
        commit = committed.groupby(["store_id", "material_id"])["committed_qty"].sum().to_dict()

    held: dict[tuple[int, int], tuple[CountAssessment, Position]] = {}
    for si, store in enumerate(wd.store_ids.tolist()):
        for mi, mid in enumerate(wd.material_ids.tolist()):
            if wd.prot_mean[si, mi] <= 0 and (store, mid) not in inv_idx:
                continue  # the store sells nothing made of it and never counted it
            win = wd.wins[mi]
            if not win.is_order_day and not config.emit_non_order_days:
                continue
            ii = inv_idx.get((store, mid))
            count = assess_count(
                list(inv_dates[ii]) if ii is not None else [],
                inv_oh[ii] if ii is not None else [],
                inv_waste[ii] if ii is not None else None,
                None if receipts is None else receipts.get((store, mid), {}),
                position_date,
                float(wd.rows[mi]["pack_size"]),
                config.counts,
            )
            oi = out_idx.get((store, mid))
            pos = inventory_position(
                count.on_hand,
                out.iloc[oi] if oi is not None else out.iloc[0:0],
                float(commit.get((store, mid), 0.0)),
                win.delivery_date,
                win.window_end,
            )
            if wd.shelf[mi] > 0 and receipts is not None:  # expiring stock covers only the days before it expires
                usable, gone = usable_on_hand(count.on_hand, receipts.get((store, mid)), position_date, wd.shelf[mi],
                                              win.delivery_date, float(wd.pre_median[si, mi]))
                if gone > 0:
                    pos = replace(pos, on_hand=usable, expiring=gone)
            held[(si, mi)] = (count, pos)
    return held


def lines_to_frame(lines: list[ProposalLine]) -> pd.DataFrame:
    """The proposal as a DataFrame (one row per line), e.g. for the report or a database write-back."""
    return pd.DataFrame([ln.model_dump() for ln in lines])
