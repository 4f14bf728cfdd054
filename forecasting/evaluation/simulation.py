"""Day-by-day replay of a replenishment policy against realised demand: what planners would have seen.

Why a replay and not a formula: lost sales, pack rounding, delivery calendars and expiry interact, and the metrics
planners use (fill rate, cycle service level, waste %, days of cover, cost) only come out of walking the days.
Pure: demand, starting stock and costs in, metrics out; the policy is any callable, so the production engine
(``forecasting.proposal``) and simple baselines are compared on the same days.

Day convention (same as the proposal): arrivals due today are received in the morning; the policy then sees the
stock and the pipeline and may order (arrival = day + lead time, or the supplier's calendar); demand is served
first-in-first-out from the oldest batch, unmet demand is lost; at the end of the day batches past their shelf life
are wasted (a batch received on day d with shelf life L is sold on days d .. d + L - 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from forecasting.errors import DataError
from forecasting.inventory.schedule import DeliverySchedule


@dataclass(frozen=True)
class SimState:
    """What a policy may look at when ordering on ``day`` for one store x material."""

    store_id: int
    material_id: int
    day: date
    on_hand: float  # after this morning's receipts
    pipeline: tuple[tuple[date, float], ...]  # (arrival, qty) not yet received
    past_demand: np.ndarray  # realised demand of the days before ``day`` (oldest first)

    @property
    def on_order(self) -> float:
        return float(sum(q for _, q in self.pipeline))

    @property
    def inventory_position(self) -> float:
        return self.on_hand + self.on_order


Policy = Callable[[SimState], float]


@dataclass(frozen=True)
class MaterialCosts:
    """Per-unit economics of one material: purchase cost, lost margin when short, salvage share when wasted."""

    unit_cost: float
    lost_margin: float
    salvage_ratio: float = 0.0


@dataclass
class SimulationResult:
    demand: float
    sold: float
    lost: float
    wasted: float
    received: float
    fill_rate: float  # units served / units demanded
    cycle_service_level: float  # share of replenishment cycles without a lost sale
    in_stock_day_rate: float  # share of store x material days without a lost sale
    waste_pct: float  # wasted / (sold + wasted)
    days_of_cover: float  # mean end-of-day stock / mean daily demand
    holding_cost: float
    waste_cost: float
    lost_margin_cost: float
    daily: pd.DataFrame = field(repr=False)
    stockout_hours: float = float("nan")  # open hours out of stock (replay with an hourly profile)

    @property
    def total_cost(self) -> float:
        return self.holding_cost + self.waste_cost + self.lost_margin_cost

    def summary(self) -> dict[str, float]:
        keys = ("demand", "sold", "lost", "wasted", "fill_rate", "cycle_service_level", "in_stock_day_rate",
                "waste_pct", "days_of_cover", "holding_cost", "waste_cost", "lost_margin_cost", "stockout_hours")
        return {k: float(getattr(self, k)) for k in keys} | {"total_cost": float(self.total_cost)}


def _ratio(a: float, b: float, empty: float) -> float:
    return a / b if b > 0 else empty


def simulate(
    demand: pd.DataFrame,
    policy: Policy,
    lead_time_days: dict[int, int] | int,
    shelf_life_days: dict[int, int | None],
    start_inventory: dict[tuple[int, int], float],
    costs: dict[int, MaterialCosts],
    holding_cost_daily_ratio: float = 0.001,
    schedules: dict[int, DeliverySchedule] | None = None,
) -> SimulationResult:
    """Replay ``policy`` over ``demand`` (store_id, material_id, date, qty: realised daily demand, every day).

    ``lead_time_days`` per material (or one for all) is used unless ``schedules`` gives the material's supplier
    calendar (then arrival = its delivery date, and orders on non-order days still arrive with the next truck).
    ``shelf_life_days`` None or missing = does not expire. Starting stock is fresh on the first day.
    """
    for c in ("store_id", "material_id", "date", "qty"):
        if c not in demand.columns:
            raise DataError(f"demand: missing column {c!r}")
    if (demand["qty"] < 0).any():
        raise DataError("demand: negative quantities")
    d = demand.copy()
    d["date"] = pd.to_datetime(d["date"]).dt.date
    days = sorted(d["date"].unique())
    if not days:
        raise DataError("demand: no days to simulate")
    calendar = [days[0] + timedelta(days=k) for k in range((days[-1] - days[0]).days + 1)]
    pivot = d.pivot_table(index=["store_id", "material_id"], columns="date", values="qty", aggfunc="sum")
    pivot = pivot.reindex(columns=calendar).fillna(0.0)

    rows = []
    cycles = cycles_ok = 0
    for (store, mid), series in pivot.iterrows():
        store, mid = int(store), int(mid)
        dem = series.to_numpy(dtype=float)
        life = shelf_life_days.get(mid)
        life = int(life) if life is not None and not pd.isna(life) and int(life) > 0 else None
        lead = lead_time_days.get(mid, 0) if isinstance(lead_time_days, dict) else int(lead_time_days)
        cost = costs.get(mid)
        if cost is None:
            raise DataError(f"no costs for material {mid}")
        start = float(start_inventory.get((store, mid), 0.0))
        batches: list[list] = [[calendar[0] + timedelta(days=life) if life else None, start]] if start > 0 else []
        pipeline: list[tuple[date, float]] = []
        cycle_short = False
        for t, day in enumerate(calendar):
            expiry = day + timedelta(days=life) if life else None
            received = sum(q for a, q in pipeline if a <= day)
            pipeline = [(a, q) for a, q in pipeline if a > day]
            on_hand = sum(b[1] for b in batches) + received
            qty = max(0.0, float(policy(SimState(store, mid, day, on_hand, tuple(pipeline), dem[:t]))))
            if qty > 0:
                sched = schedules.get(mid) if schedules else None
                arrival = sched.delivery_date(day) if sched else day + timedelta(days=lead)
                if arrival <= day:  # same-day delivery is on the shelf before the demand
                    received += qty
                else:
                    pipeline.append((arrival, qty))
            if received > 0:
                batches.append([expiry, received])
                cycles += 1  # a receipt closes the previous replenishment cycle
                cycles_ok += 0 if cycle_short else 1
                cycle_short = False
            need, sold = float(dem[t]), 0.0
            for b in batches:  # FIFO: oldest first
                take = min(b[1], need - sold)
                b[1] -= take
                sold += take
                if sold >= need - 1e-12:
                    break
            lost = max(need - sold, 0.0)
            cycle_short = cycle_short or lost > 1e-9
            tomorrow = day + timedelta(days=1)
            wasted = sum(b[1] for b in batches if b[0] is not None and b[0] <= tomorrow)
            batches = [b for b in batches if b[1] > 1e-12 and not (b[0] is not None and b[0] <= tomorrow)]
            rows.append((store, mid, day, need, sold, lost, wasted, received, sum(b[1] for b in batches), qty))
        cycles += 1
        cycles_ok += 0 if cycle_short else 1

    daily = pd.DataFrame(
        rows, columns=["store_id", "material_id", "date", "demand", "sold", "lost", "wasted", "received", "end_on_hand",
                       "ordered"]
    )
    unit_cost = daily["material_id"].map({m: c.unit_cost for m, c in costs.items()})
    margin = daily["material_id"].map({m: c.lost_margin for m, c in costs.items()})
    salvage = daily["material_id"].map({m: c.salvage_ratio for m, c in costs.items()})
    tot = daily[["demand", "sold", "lost", "wasted", "received"]].sum()
    return SimulationResult(
        demand=float(tot["demand"]),
        sold=float(tot["sold"]),
        lost=float(tot["lost"]),
        wasted=float(tot["wasted"]),
        received=float(tot["received"]),
        fill_rate=_ratio(tot["sold"], tot["demand"], 1.0),
        cycle_service_level=_ratio(cycles_ok, cycles, 1.0),
        in_stock_day_rate=float((daily["lost"] <= 1e-9).mean()),
        waste_pct=_ratio(tot["wasted"], tot["sold"] + tot["wasted"], 0.0),
        days_of_cover=_ratio(daily["end_on_hand"].mean(), daily["demand"].mean(), float("inf")),
        holding_cost=float((daily["end_on_hand"] * unit_cost * holding_cost_daily_ratio).sum()),
        waste_cost=float((daily["wasted"] * unit_cost * (1.0 - salvage)).sum()),
        lost_margin_cost=float((daily["lost"] * margin).sum()),
        daily=daily,
    )


def order_up_to_policy(levels: dict[int, float], pack_size: dict[int, float] | None = None) -> Policy:
    """A baseline: every day order up to a fixed level per material (whole packs, rounded up)."""

    def policy(state: SimState) -> float:
        need = levels.get(state.material_id, 0.0) - state.inventory_position
        if need <= 0:
            return 0.0
        pack = (pack_size or {}).get(state.material_id, 1.0)
        return float(np.ceil(need / pack - 1e-9) * pack)

    return policy


# --------------------------------------------------------------------------------------------------------------
# Day-major replay: many store x material series at once, a batched policy (one call per day for every series)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayState:
    """What a batched policy sees on ``day`` (index ``t``) for all series: arrays of shape (n,) or (K, n)."""

    day: date
    t: int
    store_ids: np.ndarray
    material_ids: np.ndarray
    on_hand_prev: np.ndarray  # end of the previous day (the evening count)
    received: np.ndarray  # received this morning
    on_hand: np.ndarray  # after this morning's receipts
    pipeline: np.ndarray  # (K, n): arrivals on day + 1 .. day + K, not yet received
    past_demand: np.ndarray  # (t, n): realised demand of the replayed days before ``day``

    @property
    def on_order(self) -> np.ndarray:
        return self.pipeline.sum(axis=0)


BatchPolicy = Callable[[DayState], np.ndarray]


def stockout_hours(sold: np.ndarray, demand: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Hours out of stock per (series, day): the stock ran out when the day's cumulative hourly demand share reached
    sold / demand (linear within the hour); every open hour after that is out. ``shares``: (n, D, H)."""
    frac = np.divide(sold, demand, out=np.ones_like(sold, dtype=float), where=demand > 1e-12)
    short = (demand > 1e-12) & (frac < 1.0 - 1e-9)
    out = np.zeros(sold.shape)
    if not short.any():
        return out
    i, t = np.nonzero(short)
    sh = shares[i, t, :]  # (k, H)
    cum = np.cumsum(sh, axis=1)
    f = frac[i, t][:, None]
    part = np.divide(cum - f, sh, out=np.zeros_like(sh), where=sh > 1e-12)
    out[i, t] = (np.clip(part, 0.0, 1.0) * (sh > 1e-12)).sum(axis=1)
    return out


@dataclass(frozen=True)
class Recipes:
    """Product demand and recipes: a product sells only while every material of its recipe is in stock.

    ``store_idx`` (n,) row of each series in ``units``; ``units`` (S, P, D) realised product demand; ``qty`` (P, n)
    quantity of series i's material per unit of product p (its store's recipe column).
    """

    store_idx: np.ndarray
    units: np.ndarray
    qty: np.ndarray


@dataclass(frozen=True)
class DeliveryRisk:
    """Late and short deliveries drawn once per (order day, series): ``late`` (D, n) bool arrives one day after its
    date, ``received_share`` (D, n) the share of an order that arrives (1 = in full).

    Why drawn up front: every policy replayed on one demand seed meets the same supplier misses on the same days
    (common random numbers), so the paired difference between policies carries no delivery luck.
    """

    late: np.ndarray
    received_share: np.ndarray

    @classmethod
    def draw(cls, n: int, days: int, late_rate: float, short_rate: float, short_range: tuple[float, float],
             seed: int) -> DeliveryRisk:
        rng = np.random.default_rng([seed, 11])
        late = rng.random((days, n)) < late_rate
        short = rng.random((days, n)) < short_rate
        share = np.where(short, rng.uniform(short_range[0], short_range[1], size=(days, n)), 1.0)
        return cls(late, share)


def replay(
    days: list[date],
    store_ids: np.ndarray,
    material_ids: np.ndarray,
    demand: np.ndarray,
    policy: BatchPolicy,
    schedules: list[DeliverySchedule],
    shelf_life_days: np.ndarray,
    start_on_hand: np.ndarray,
    costs: list[MaterialCosts],
    *,
    recipes: Recipes | None = None,
    start_pipeline: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    hour_shares: np.ndarray | None = None,
    holding_cost_daily_ratio: float = 0.001,
    lookahead: int = 42,
    deliveries: DeliveryRisk | None = None,
) -> SimulationResult:
    """Replay ``policy`` on consecutive ``days`` for n series (store x material) at once; same day convention as
    ``simulate`` (morning receipts, order, FIFO demand, lost sales, end-of-day expiry).

    ``demand`` (n, D) realised material demand; ``schedules`` each series' supplier calendar (arrival = its delivery
    date); ``shelf_life_days`` (n,) 0 = does not expire; ``start_pipeline`` (D + lookahead, n) arrivals already on
    order; ``hour_shares`` (n, D, H) the hourly demand profile for stockout hours. Starting stock is fresh.
    ``deliveries``: late (one day) and short orders; the policy sees a late order on its real arrival day and a
    short one in full until it is received (as an open order line shows it).

    Without ``recipes`` each material's demand is lost on its own and the aggregates (demand, sold, lost, wasted,
    cover) sum material units times ``weights`` (default 1). With ``recipes`` a product sells only the share of the
    day its scarcest material lasts (as a till would: no cup, no latte), ``demand``/``sold``/``lost``/``fill_rate``
    count product units, and ``wasted``, ``waste_pct`` and ``days_of_cover`` weigh material units by ``weights``
    (e.g. unit cost, so waste % is the value wasted over the value used or wasted).
    """
    n, D = demand.shape
    if len(days) != D or len(schedules) != n or len(costs) != n:
        raise DataError("replay: days, schedules and costs must match the demand array")
    if (demand < 0).any():
        raise DataError("demand: negative quantities")
    life = np.asarray(shelf_life_days, dtype=int)
    perish = life > 0
    A = int(max(life.max(initial=0), 1)) + 1
    slot = np.where(perish, life - 1, A - 1)
    rows = np.arange(n)
    buckets = np.zeros((n, A))
    buckets[rows, slot] = np.asarray(start_on_hand, dtype=float)
    arrivals = np.zeros((D + lookahead + 1, n))  # what will be received
    if start_pipeline is not None:
        k = min(len(start_pipeline), len(arrivals))
        arrivals[:k] += start_pipeline[:k]
    on_order = arrivals.copy()  # what the policy sees on order (ordered quantities: a shortfall shows at receipt)
    offsets = {s: np.array([(s.delivery_date(d) - d).days for d in days]) for s in set(schedules)}
    off = np.stack([offsets[s] for s in schedules], axis=1)  # (D, n): days from ordering to arrival
    if recipes is not None:
        uses = recipes.qty.T > 0  # (n, P)
        stores_of = [np.nonzero(recipes.store_idx == j)[0] for j in range(recipes.units.shape[0])]
        prod_demand = prod_sold = 0.0

    names = ("demand", "sold", "lost", "wasted", "received", "end_on_hand", "ordered", "own_fill")
    rec = {k: np.zeros((n, D)) for k in names}
    prev = buckets.sum(axis=1)
    for t, day in enumerate(days):
        got = arrivals[t].copy()
        buckets[rows, slot] += got
        on_hand = buckets.sum(axis=1)
        state = DayState(day, t, store_ids, material_ids, prev, got, on_hand,
                         on_order[t + 1: t + 1 + lookahead], demand[:, :t].T)
        qty = np.maximum(np.nan_to_num(np.asarray(policy(state), dtype=float)), 0.0)
        if qty.shape != (n,):
            raise DataError(f"policy returned shape {qty.shape}, expected ({n},)")
        pos = qty > 0
        if pos.any():
            at = t + off[t]
            same = pos & (at <= t)
            if same.any():  # same-day delivery is on the shelf before the demand
                buckets[rows[same], slot[same]] += qty[same]
                got = got + np.where(same, qty, 0.0)
            later = pos & (at > t)
            late = deliveries.late[t] & later if deliveries is not None else np.zeros(n, dtype=bool)
            share = deliveries.received_share[t] if deliveries is not None else np.ones(n)
            at = np.minimum(at + late, len(arrivals) - 1)
            np.add.at(arrivals, (at[later], rows[later]), (qty * share)[later])
            np.add.at(on_order, (at[later], rows[later]), qty[later])
        need = demand[:, t]
        avail = buckets.sum(axis=1)
        own = np.clip(np.divide(avail, need, out=np.ones(n), where=need > 1e-12), 0.0, 1.0)
        use = need * own
        if recipes is not None:
            u = recipes.units[:, :, t]  # (S, P)
            frac = np.where(uses, own[:, None], 1.0)  # (n, P)
            g = np.ones_like(u, dtype=float)
            for j, idx in enumerate(stores_of):
                if len(idx):
                    g[j] = frac[idx].min(axis=0)
            use = np.minimum((u[recipes.store_idx] * g[recipes.store_idx] * recipes.qty.T).sum(axis=1), avail)
            prod_demand += float(u.sum())
            prod_sold += float((u * g).sum())
        cum = np.cumsum(buckets, axis=1)
        take = np.clip(use[:, None] - (cum - buckets), 0.0, buckets)
        buckets -= take
        sold = take.sum(axis=1)
        wasted = np.where(perish, buckets[:, 0], 0.0)
        shifted = np.concatenate([buckets[:, 1:], np.zeros((n, 1))], axis=1)
        buckets = np.where(perish[:, None], shifted, buckets)
        buckets[buckets < 1e-12] = 0.0
        prev = buckets.sum(axis=1)
        for k, v in zip(names, (need, sold, need - sold, wasted, got, prev, qty, own), strict=True):
            rec[k][:, t] = v

    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    unit_cost = np.array([c.unit_cost for c in costs])
    margin = np.array([c.lost_margin for c in costs])
    salvage = np.array([c.salvage_ratio for c in costs])
    tot = {k: float((rec[k] * w[:, None]).sum()) for k in names}
    # cycles: a receipt starts a new one; a cycle is good when the material never ran short in it
    cyc_id = np.cumsum(rec["received"] > 0, axis=1)
    short = rec["own_fill"] < 1.0 - 1e-9
    cycles = ok = 0
    for i in range(n):
        k = int(cyc_id[i, -1]) + 1
        cycles += k
        ok += k - len(set(cyc_id[i][short[i]].tolist()))
    hours = None
    if hour_shares is not None:
        hours = stockout_hours(rec["own_fill"] * rec["demand"], rec["demand"], hour_shares)
    daily = pd.DataFrame({
        "store_id": np.repeat(store_ids, D), "material_id": np.repeat(material_ids, D),
        "date": np.tile(np.array(days, dtype=object), n), **{k: rec[k].reshape(-1) for k in names},
    })
    if hours is not None:
        daily["stockout_hours"] = hours.reshape(-1)
    if recipes is not None:
        p_dem, p_sold = prod_demand, prod_sold
    else:
        p_dem, p_sold = tot["demand"], tot["sold"]
    return SimulationResult(
        demand=p_dem, sold=p_sold, lost=p_dem - p_sold, wasted=tot["wasted"], received=tot["received"],
        fill_rate=_ratio(p_sold, p_dem, 1.0),
        cycle_service_level=_ratio(ok, cycles, 1.0),
        in_stock_day_rate=float((~short).mean()),
        waste_pct=_ratio(tot["wasted"], tot["sold"] + tot["wasted"], 0.0),
        days_of_cover=_ratio(tot["end_on_hand"] / D, tot["sold"] / D, float("inf")),
        holding_cost=float((rec["end_on_hand"] * (unit_cost * holding_cost_daily_ratio)[:, None]).sum()),
        waste_cost=float((rec["wasted"] * (unit_cost * (1.0 - salvage))[:, None]).sum()),
        lost_margin_cost=float((rec["lost"] * margin[:, None]).sum()),
        daily=daily,
        stockout_hours=float(hours.sum()) if hours is not None else float("nan"),
    )
