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
from forecasting.schedule import DeliverySchedule


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

    @property
    def total_cost(self) -> float:
        return self.holding_cost + self.waste_cost + self.lost_margin_cost

    def summary(self) -> dict[str, float]:
        keys = ("demand", "sold", "lost", "wasted", "fill_rate", "cycle_service_level", "in_stock_day_rate",
                "waste_pct", "days_of_cover", "holding_cost", "waste_cost", "lost_margin_cost")
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
