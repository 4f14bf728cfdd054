"""Replay of ready food through the day: thaw or bake at release times, stale after shelf hours, sold oldest first.

Why a replay by time slot and not the daily replay (``forecasting.evaluation.simulation``): a pastry put out at
06:00 is stale by 14:00, so a day's quantity that is right on the daily total can still be thrown away at 14:00 and
missing from 14:00 to closing. Only walking the day tells a plan that releases the same pieces in three batches
from one that puts them all out at opening. Pure functions: demand, plans and item economics in, outcomes out.

The day (one store, its ready-food items, opening to closing in slots of ``slot_h`` hours):

* demand: a gamma day multiplier per item (mean 1, variance ``dispersion``: the negative binomial's
  over-dispersion) times Poisson per slot from the true hourly means spread evenly over the hour (so each hour is
  Poisson given the day's level); drawn once per (seed, store, day) and given to every plan alike (common random
  numbers): the plans' differences are not noise;
* a release puts its pieces on the shelf at its slot (a release before opening: at opening); its pieces are
  stale ``shelf_hours`` after the release (at the slot boundary at or after that time, as ``inventory.bake``
  plans them) or at closing, and are then thrown away (waste);
* each slot's demand takes the oldest fresh pieces first (FIFO); what the shelf cannot serve is lost, except that
  a share ``substitution_share`` of it buys the item's like item (same category) if that one still has fresh
  pieces; those units are sold by the like item and are not lost (rounded with a uniform drawn with the demand,
  so the substitution is common to the plans too);
* stockout hours: the slots of opening hours in which the item's shelf was empty at the start of the slot or its
  own demand was not fully served, times the slot length (before any substitution: the item itself was out). As in
  the daily replay (``simulation.stockout_hours``), an empty shelf counts whether or not a customer asked in that
  slot; unlike it, hours end when a later release refills the shelf and hours before a late first release count
  (``unmet_hours``: only the slots in which a customer went without);
* cost: wasted pieces at unit cost + lost units at the item's margin (price - cost) + for substituted units the
  margin difference (the wanted item's margin - the like item's), so a plan is charged for the margin it forgoes;
* fill rate: units served (own sales + substituted) / demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from forecasting.inventory.bake import BakeItem, plan_day, simulate_demand, slot_means


@dataclass(frozen=True)
class ReplayItem:
    """One ready-food item of a store's day: shelf hours after thaw or bake, unit cost and price (USD) and its
    like item (index into the day's item list, -1: none) that takes a share of its lost demand."""

    item_id: int
    shelf_hours: float
    unit_cost: float
    price: float
    like: int = -1

    @property
    def margin(self) -> float:
        return max(self.price - self.unit_cost, 0.0)


@dataclass(frozen=True)
class DayPlan:
    """Pieces per item and release: ``pieces`` (items, releases) whole pieces at ``times`` (local hours); with
    ``targets`` (items, releases) the store fills the shelf up to the target at each release, counting the fresh
    pieces it has then (``inventory.bake``'s ``top_up`` rule), and ``pieces`` is only what the plan expected."""

    times: tuple[float, ...]
    pieces: np.ndarray
    targets: np.ndarray | None = None


@dataclass(frozen=True)
class DayDraw:
    """One day's random demand, shared by every plan: ``demand`` (items, slots) units per slot and ``u`` (items,
    slots) uniforms that round the substituted share."""

    demand: np.ndarray
    u: np.ndarray


@dataclass(frozen=True)
class DayOutcome:
    """What a plan did on one day, per item: pieces released, demand, own sales, units sold to other items' lost
    demand (substitutes), lost units, wasted pieces, stockout hours, waste cost and lost margin (USD)."""

    released: np.ndarray
    demand: np.ndarray
    sold: np.ndarray
    sold_as_substitute: np.ndarray
    substituted: np.ndarray  # units of this item's demand served by its like item
    lost: np.ndarray
    wasted: np.ndarray
    stockout_hours: np.ndarray
    unmet_hours: np.ndarray  # hours with demand the shelf could not serve (a subset of the stockout hours)
    waste_usd: np.ndarray
    lost_margin_usd: np.ndarray

    @property
    def total_cost(self) -> float:
        return float(self.waste_usd.sum() + self.lost_margin_usd.sum())

    @property
    def fill_rate(self) -> float:
        d = float(self.demand.sum())
        return 1.0 - float(self.lost.sum()) / d if d > 0 else 1.0


def n_slots(open_hour: float, close_hour: float, slot_h: float) -> int:
    return int(math.ceil((close_hour - open_hour) / slot_h - 1e-9))


def slot_of(t: float, open_hour: float, slot_h: float, slots: int) -> int:
    """The slot a time falls in, rounded up to the slot boundary (as ``inventory.bake`` plans): 0..slots."""
    return int(min(max(math.ceil((t - open_hour) / slot_h - 1e-9), 0), slots))


def draw_day(hourly_means: list[dict[int, float]], dispersion: float, open_hour: float, close_hour: float,
             slot_h: float, seed: int) -> DayDraw:
    """The day's demand per item and slot from the true hourly means (``inventory.bake.simulate_demand``: the
    model the plans assume, with the truth's own dispersion), plus the substitution uniforms; seeded, so every plan
    meets the same draw."""
    if not hourly_means:
        return DayDraw(np.zeros((0, n_slots(open_hour, close_hour, slot_h)), np.int64),
                       np.zeros((0, n_slots(open_hour, close_hour, slot_h))))
    means = np.stack([slot_means(BakeItem(0, "", m, 0.0, 0.0, 0.0, 0.0), open_hour, close_hour, slot_h)
                      for m in hourly_means])
    demand, _ = simulate_demand(means, np.full(len(means), max(dispersion, 0.0)), 1, seed)
    u = np.random.default_rng([seed, 1]).random(means.shape)
    return DayDraw(demand[:, 0, :].astype(np.int64), u)


def replay_day(items: list[ReplayItem], plan: DayPlan, draw: DayDraw, open_hour: float, close_hour: float,
               slot_h: float, substitution_share: float = 0.0) -> DayOutcome:
    """Walk one day slot by slot: releases, expiry, FIFO sales, lost sales, substitution (module docstring)."""
    n_i = len(items)
    slots = n_slots(open_hour, close_hour, slot_h)
    demand = np.asarray(draw.demand, dtype=np.int64)
    if demand.shape != (n_i, slots):
        raise ValueError(f"demand has shape {demand.shape}, expected {(n_i, slots)} (items, slots)")
    pieces = np.asarray(plan.pieces, dtype=np.int64).reshape(n_i, len(plan.times))
    order = np.argsort(plan.times, kind="stable")  # batches oldest first: FIFO is batch order
    times = [float(plan.times[k]) for k in order]
    pieces = pieces[:, order]
    targets = None if plan.targets is None else np.asarray(plan.targets, dtype=np.int64).reshape(n_i, -1)[:, order]
    k = len(times)
    start = [slot_of(t, open_hour, slot_h, slots) for t in times]
    expiry = np.array([[max(slot_of(t + max(it.shelf_hours, 0.0), open_hour, slot_h, slots), s)
                        for t, s in zip(times, start, strict=True)] for it in items], dtype=np.int64).reshape(n_i, k)
    stock = np.zeros((n_i, k), dtype=np.int64)
    sold = np.zeros(n_i, np.int64)
    as_sub = np.zeros(n_i, np.int64)
    subst = np.zeros(n_i, np.int64)
    lost = np.zeros(n_i, np.int64)
    wasted = np.zeros(n_i, np.int64)
    out_slots = np.zeros(n_i, np.int64)
    unmet_slots = np.zeros(n_i, np.int64)
    like = np.array([it.like for it in items], dtype=np.int64)
    share = min(max(substitution_share, 0.0), 1.0)
    released = np.zeros(n_i, np.int64)
    for t in range(slots):
        for b in range(k):
            if start[b] == t:
                if targets is None:
                    put = pieces[:, b]
                else:  # fill up to the target, counting the pieces still fresh now
                    put = np.maximum(targets[:, b] - (stock * (expiry > t)).sum(axis=1), 0)
                stock[:, b] += put
                released += put
        gone = expiry <= t
        wasted += (stock * gone).sum(axis=1)
        stock[gone] = 0
        empty = stock.sum(axis=1) == 0
        rem = demand[:, t].copy()
        for b in range(k):
            take = np.minimum(stock[:, b], rem)
            stock[:, b] -= take
            sold += take
            rem -= take
        out_slots += (empty | (rem > 0)).astype(np.int64)
        unmet_slots += (rem > 0).astype(np.int64)
        if share > 0:
            want = np.minimum(np.floor(share * rem + draw.u[:, t]).astype(np.int64), rem)
            for i in np.nonzero((want > 0) & (like >= 0))[0]:
                j = like[i]
                for b in range(k):
                    take = min(int(stock[j, b]), int(want[i]))
                    stock[j, b] -= take
                    want[i] -= take
                    rem[i] -= take
                    subst[i] += take
                    as_sub[j] += take
        lost += rem
    wasted += stock.sum(axis=1)  # thrown away at closing
    cost = np.array([max(it.unit_cost, 0.0) for it in items])
    margin = np.array([it.margin for it in items])
    diff = np.array([margin[i] - margin[it.like] if it.like >= 0 else 0.0 for i, it in enumerate(items)])
    return DayOutcome(released=released, demand=demand.sum(axis=1), sold=sold, sold_as_substitute=as_sub,
                      substituted=subst, lost=lost, wasted=wasted, stockout_hours=out_slots * slot_h,
                      unmet_hours=unmet_slots * slot_h, waste_usd=wasted * cost,
                      lost_margin_usd=lost * margin + subst * diff)


def daily_only_plan(items: list[BakeItem], open_hour: float, close_hour: float, n_samples: int = 1000,
                    seed: int = 0, slot_minutes: int = 15, waste_weight: float = 1.0) -> DayPlan:
    """Today's behaviour: the day's quantity put out at opening, a daily newsvendor on the day's forecast at each
    item's critical ratio (margin / price; margin / (margin + cost x ``waste_weight``) with a waste weight).
    ``inventory.bake.plan_day`` with one release at opening and a shelf life past closing is exactly that
    newsvendor (the release covers the whole day's demand); the replay then applies the items' real shelf hours."""
    day_long = [BakeItem(it.item_id, it.name, it.hourly_mean, it.dispersion, 48.0, it.unit_cost, it.price)
                for it in items]
    plan = plan_day(day_long, [open_hour], open_hour, close_hour, n_samples=n_samples, seed=seed,
                    slot_minutes=slot_minutes, cover="shelf_life", waste_weight=waste_weight)
    return DayPlan((float(open_hour),), _pieces(plan, len(items), 1))


def release_plan(items: list[BakeItem], release_times: list[float], open_hour: float, close_hour: float,
                 n_samples: int = 1000, seed: int = 0, slot_minutes: int = 15, cover: str = "shelf_life",
                 rule: str = "top_up", search: bool = False, waste_weight: float = 1.0) -> DayPlan:
    """The thaw and bake plan (``inventory.bake.plan_day``): pieces per release time from hourly means; the
    intraday plan gets forecast hourly means, the oracle the true ones. ``rule='top_up'``: the replay fills the shelf
    up to each release's target, as the plan tells the store."""
    plan = plan_day(items, release_times, open_hour, close_hour, n_samples=n_samples, seed=seed,
                    slot_minutes=slot_minutes, cover=cover, rule=rule, search=search,
                    waste_weight=waste_weight)
    k = len(plan.release_times)
    return DayPlan(tuple(float(t) for t in plan.release_times), _pieces(plan, len(items), k),
                   _pieces(plan, len(items), k, "shelf_target") if rule == "top_up" else None)


def _pieces(plan, n_items: int, k: int, field: str = "pieces") -> np.ndarray:
    out = np.zeros((n_items, k), dtype=np.int64)
    for i, it in enumerate(plan.items):
        out[i] = [getattr(r, field) for r in it.releases]
    return out


def like_items(categories: list[str], popularity: list[float]) -> list[int]:
    """Each item's like item: the most popular other item of the same category (-1 when it is alone), as the
    generator's realistic scenario picks the substitute a customer buys on a stockout."""
    out = []
    for i, c in enumerate(categories):
        cand = [j for j, d in enumerate(categories) if j != i and d == c]
        out.append(max(cand, key=lambda j: (popularity[j], -j)) if cand else -1)
    return out
