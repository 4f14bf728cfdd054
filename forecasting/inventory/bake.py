"""The thaw and bake plan for ready food: how many pieces of each item to put out at each release time of a day.

Why a simulation of the day rather than one newsvendor on the daily total: a piece put out at 06:00 can only sell
until it goes stale (its hours of shelf life after thaw or bake) or the store closes, and pieces still fresh from an
earlier release cover part of the next release's demand. Demand paths per item are drawn once (seeded, common to
every decision): a gamma day-level multiplier (the negative binomial's dispersion) times Poisson demand per time
slot from the hourly means, so any hourly model (shares of a daily forecast today, an hour-level model later) plugs
in as hourly means plus a dispersion. Each release is a newsvendor on the demand until its pieces go stale (or,
with ``cover='next_release'``, until the next release; closing ends both) net of the fresh pieces left from earlier
releases, at the critical ratio margin / price (a piece short loses its margin; a piece that expires loses its
cost). Pure functions: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class BakeItem:
    """One ready-food item's day: hourly demand means (units per local hour, keyed by hour 0..23), the day's
    negative-binomial dispersion (variance = mean + dispersion x mean^2), shelf hours, unit cost and price (USD)."""

    item_id: int
    name: str
    hourly_mean: dict[int, float]
    dispersion: float
    shelf_hours: float
    unit_cost: float
    price: float


@dataclass(frozen=True)
class SellDownSettings:
    """The end-of-day app coupon: offered ``hours_before_close`` before closing at ``discount`` off the price,
    assumed to raise the item's demand in that window by ``lift`` (0.5 = +50%)."""

    hours_before_close: float = 2.0
    discount: float = 0.30
    lift: float = 0.5
    min_saved_pieces: float = 1.0


@dataclass(frozen=True)
class Release:
    """One release of one item: pieces put out and what they are expected to do (pieces and USD)."""

    item_id: int
    name: str
    time: float  # local hours since midnight, e.g. 10.5 = 10:30
    start_by: float  # when thawing or baking must start
    covers_until: float
    pieces: int
    shelf_target: int  # fresh pieces the shelf should hold right after the release (pieces + fresh expected)
    demand_mean: float  # expected demand in the hours this release covers (pieces)
    fresh_carried: float  # expected fresh pieces left from earlier releases at this time
    expected_sold: float
    expected_waste: float
    expected_lost: float
    waste_usd: float
    lost_margin_usd: float
    service_level: float
    reason: str  # plain words: how many, when, for which hours
    detail: str  # the trade-off behind the number (margin, cost, critical ratio)


@dataclass(frozen=True)
class SellDown:
    """The coupon suggestion for one item with leftovers expected to expire tonight (offered or not, and why)."""

    item_id: int
    name: str
    time: float
    offer: bool
    discount: float
    lift: float
    expected_leftover: float  # pieces expected to be thrown away tonight without the coupon
    expected_saved: float  # pieces the coupon is expected to sell that would have been thrown away
    effect_usd: float  # revenue with the coupon - without it, in the window (the pieces' cost is already spent)
    reason: str


@dataclass(frozen=True)
class ItemPlan:
    item_id: int
    name: str
    daily_mean: float
    shelf_hours: float
    unit_cost: float
    price: float
    releases: list[Release]
    sell_down: SellDown | None
    pieces: int
    expected_sold: float
    expected_waste: float
    expected_lost: float


@dataclass(frozen=True)
class BakePlan:
    open_hour: float
    close_hour: float
    release_times: list[float]
    dropped_times: list[float]  # configured releases at or after closing: not used
    items: list[ItemPlan] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)


def hhmm(t: float) -> str:
    """10.5 -> '10:30' (times are local hours since midnight)."""
    m = int(round(t * 60))
    return f"{m // 60 % 24:02d}:{m % 60:02d}"


def parse_hhmm(text: str) -> float:
    """'10:30' -> 10.5; ValueError with the offending text otherwise."""
    try:
        h, m = (int(x) for x in str(text).split(":"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time HH:MM") from None
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(f"{text!r} is not a time HH:MM")
    return h + m / 60


def _pc(x: float) -> str:
    return f"{x:.0f} pc" if abs(x - round(x)) < 0.05 or x >= 10 else f"{x:.1f} pc"


def slot_means(item: BakeItem, open_hour: float, close_hour: float, slot_h: float) -> np.ndarray:
    """Expected demand per slot of ``slot_h`` hours over the opening hours (an hour's mean spread evenly)."""
    n = int(math.ceil((close_hour - open_hour) / slot_h - 1e-9))
    starts = open_hour + slot_h * np.arange(n)
    ends = np.minimum(starts + slot_h, close_hour)
    out = np.zeros(n)
    for h, m in item.hourly_mean.items():
        overlap = np.clip(np.minimum(ends, h + 1) - np.maximum(starts, h), 0.0, None)
        out += float(m) * overlap
    return out


def simulate_demand(means: np.ndarray, dispersion: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Demand paths (items, n, slots) and each path's day multiplier (items, n): a gamma multiplier with mean 1 and
    variance ``dispersion`` times Poisson per slot, so each day's total is negative binomial with the daily mean
    and dispersion."""
    rng = np.random.default_rng(seed)
    a = np.maximum(np.asarray(dispersion, float), 0.0)[:, None]
    g = np.where(a > 1e-9, rng.gamma(1.0 / np.maximum(a, 1e-9), np.maximum(a, 1e-9), size=(len(a), n)), 1.0)
    return rng.poisson(g[:, :, None] * means[:, None, :]).astype(np.int32), g


def plan_day(items: list[BakeItem], release_times: list[float], open_hour: float, close_hour: float,
             lead_hours: float = 0.5, sell_down: SellDownSettings | None = None, n_samples: int = 1000,
             seed: int = 0, slot_minutes: int = 15, cover: str = "shelf_life", rule: str = "top_up",
             search: bool = False, waste_weight: float = 1.0) -> BakePlan:
    """The day's plan for every item: whole pieces per release, expected sales, waste and lost sales, reasons.

    ``cover``: the demand each release's newsvendor covers: until its pieces go stale (``shelf_life``, the
    default of ``planning.bake.cover``: what they can still sell, pooling slow items' demand) or only until the next
    release (``next_release``); either ends at closing.

    ``rule``: what the store does at each release. ``top_up`` (the default): it fills the shelf up to the release's
    shelf target, counting the fresh pieces it actually has then, so a slow morning puts out fewer pieces at 11:00
    and a busy one more; ``pieces`` is then the expected number put out. ``fixed``: it puts out the planned pieces
    whatever the shelf holds. ``search`` (top_up only): the targets are searched to minimise the day's expected cost
    under the top-up rule (``search_targets``), starting from the per-release newsvendor ones. ``waste_weight``: a
    piece thrown away counts as this many times its cost in every decision (1: its cost; more: the chain's own
    price on waste, e.g. disposal or a waste goal); the plan's dollar figures stay at cost."""
    if cover not in ("next_release", "shelf_life"):
        raise ValueError(f"cover {cover!r}: next_release or shelf_life")
    if rule not in ("top_up", "fixed"):
        raise ValueError(f"rule {rule!r}: top_up or fixed")
    if close_hour <= open_hour:
        raise ValueError(f"closing {hhmm(close_hour)} is not after opening {hhmm(open_hour)}")
    slot_h = slot_minutes / 60
    times = sorted(set(release_times))
    used = [t for t in times if t < close_hour]
    dropped = [t for t in times if t >= close_hour]
    assumptions = [f"pieces not sold by closing ({hhmm(close_hour)}) are thrown away",
                   "a piece short loses its margin (price - cost); a piece that expires loses its cost",
                   f"releases before opening ({hhmm(open_hour)}) are on the shelf at opening"]
    plan = BakePlan(open_hour, close_hour, used, dropped, [], assumptions)
    if not items or not used:
        return plan
    n_slots = int(math.ceil((close_hour - open_hour) / slot_h - 1e-9))
    means = np.stack([slot_means(it, open_hour, close_hour, slot_h) for it in items])
    disp = np.array([it.dispersion for it in items])
    demand, level = simulate_demand(means, disp, n_samples, seed)
    extra = None
    if sell_down is not None:  # the coupon's extra demand in its window: lift x the path's level x the window mean
        w0 = _slot_of(close_hour - sell_down.hours_before_close, open_hour, slot_h, n_slots)
        lam = max(sell_down.lift, 0.0) * level * means[:, w0:].sum(axis=1)[:, None]
        extra = np.random.default_rng(seed + 1).poisson(lam)
    return _plan(items, plan, used, demand, extra, means, slot_h, n_slots, lead_hours, sell_down, cover, rule,
                 search, waste_weight)


def _slot_of(t: float, open_hour: float, slot_h: float, n_slots: int) -> int:
    return int(min(max(math.ceil((t - open_hour) / slot_h - 1e-9), 0), n_slots))


def _plan(items, plan: BakePlan, used, demand, extra, means, slot_h, n_slots, lead_hours, sd, cover,
          rule, search, waste_weight) -> BakePlan:
    n_items, n = demand.shape[:2]
    open_h, close_h = plan.open_hour, plan.close_hour
    starts = [_slot_of(t, open_h, slot_h, n_slots) for t in used]
    k = len(used)
    # a piece expires shelf_hours after its release (thawed or baked then), at the latest at closing
    expiry = np.array([[max(_slot_of(t + max(it.shelf_hours, 0.0), open_h, slot_h, n_slots), s)
                        for t, s in zip(used, starts, strict=True)] for it in items])  # (I, k)
    price = np.array([max(it.price, 0.0) for it in items])
    cost = np.array([max(it.unit_cost, 0.0) for it in items])
    margin = np.maximum(price - cost, 0.0)
    # a piece short loses its margin, one thrown away its cost x waste_weight (1: the cost alone)
    spoil = cost * max(waste_weight, 0.0)
    cr = np.where(margin > 0, margin / np.maximum(margin + spoil, 1e-9), 0.0)
    stock = np.zeros((n_items, n, k), dtype=np.int32)
    waste = np.zeros((n_items, n, k))
    sold = np.zeros((n_items, n, k))
    lost = np.zeros((n_items, n, k))
    pieces = np.zeros((n_items, k), dtype=np.int64)
    carried = np.zeros((n_items, k))
    dmean = np.zeros((n_items, k))
    until = np.zeros((n_items, k))
    target = np.zeros((n_items, k), dtype=np.int64)
    sd_slot = None
    if sd is not None:
        sd_slot = _slot_of(close_h - sd.hours_before_close, open_h, slot_h, n_slots)
    at_sd = None
    preset = None
    if rule == "top_up" and search:  # the targets that minimise the plan's own expected cost under the top-up rule
        init = np.stack([_quantile_target(demand, starts[j], _cover_end(cover, expiry, starts, j, n_slots), cr)
                         for j in range(k)], axis=1)
        preset = search_targets(demand, expiry, starts, spoil, margin, init)
    for j in range(k):
        s0 = starts[j]
        s1 = starts[j + 1] if j + 1 < k else n_slots
        fresh = np.zeros((n_items, n))
        for b in range(j):
            alive = expiry[:, b] > s0
            fresh += stock[:, :, b] * alive[:, None]
        ends = _cover_end(cover, expiry, starts, j, n_slots)
        # the shelf target: the covered demand's quantile at each item's critical ratio (or the searched one) ...
        target[:, j] = preset[:, j] if preset is not None else _quantile_target(demand, s0, ends, cr)
        # ... less the fresh pieces on the shelf then: on each path (top_up) or expected (fixed), in whole pieces
        if rule == "top_up":
            put = np.maximum(target[:, j][:, None] - fresh, 0).astype(np.int32)
            pieces[:, j] = np.floor(put.mean(axis=1) + 0.5).astype(np.int64)
        else:
            pieces[:, j] = np.maximum(np.floor(target[:, j] - fresh.mean(axis=1) + 0.5), 0).astype(np.int64)
            put = np.broadcast_to(pieces[:, j][:, None], (n_items, n))
        carried[:, j] = fresh.mean(axis=1)
        until[:, j] = np.minimum(open_h + ends * slot_h, close_h)
        mcum = np.concatenate([np.zeros((n_items, 1)), np.cumsum(means[:, s0:], axis=1)], axis=1)
        dmean[:, j] = mcum[np.arange(n_items), ends - s0]
        stock[:, :, j] = put
        for t in range(s0, s1):
            if sd_slot is not None and t == sd_slot:
                at_sd = stock.copy()
            _step(t, stock, expiry, demand[:, :, t], waste, sold, lost[:, :, j])
    if sd_slot is not None and at_sd is None:  # the window starts at closing or later: nothing left to sell down
        at_sd = stock.copy()
    waste += stock  # thrown away at closing
    # Demand before the first release (a release after opening) is lost; it is counted on the first release.
    lost[:, :, 0] += demand[:, :, :starts[0]].sum(axis=2)
    out = []
    def weighed(i: int) -> str:
        return f" (counted as ${spoil[i]:.2f}: waste weight {waste_weight:g})" if abs(waste_weight - 1) > 1e-9 else ""

    for i, it in enumerate(items):
        rel = []
        for j, t in enumerate(used):
            w, lo = float(waste[i, :, j].mean()), float(lost[i, :, j].mean())
            r = Release(
                item_id=it.item_id, name=it.name, time=t, start_by=t - lead_hours, covers_until=float(until[i, j]),
                pieces=int(pieces[i, j]), shelf_target=int(target[i, j]), demand_mean=round(float(dmean[i, j]), 2),
                fresh_carried=round(float(carried[i, j]), 2), expected_sold=round(float(sold[i, :, j].mean()), 2),
                expected_waste=round(w, 2), expected_lost=round(lo, 2), waste_usd=round(float(w * cost[i]), 2),
                lost_margin_usd=round(float(lo * margin[i]), 2), service_level=round(float(cr[i]), 3),
                reason=_reason(it, t, int(pieces[i, j]), int(target[i, j]), float(dmean[i, j]),
                               float(carried[i, j]), float(until[i, j]), j == 0 and t > open_h, rule),
                detail=(f"a piece sold earns ${margin[i]:.2f} (price ${price[i]:.2f} - cost ${cost[i]:.2f}), one "
                        f"thrown away costs ${cost[i]:.2f}{weighed(i)}: critical ratio {cr[i]:.2f}, so the release "
                        f"covers the demand of {cr[i]:.0%} of likely days, net of the fresh pieces left"))
            rel.append(r)
        sdown = None
        if sd is not None and sd_slot is not None:
            sdown = _sell_down(it, i, sd, sd_slot, at_sd, expiry, demand, extra, price[i], open_h, slot_h,
                               n_slots)
        out.append(ItemPlan(it.item_id, it.name, round(float(means[i].sum()), 2), it.shelf_hours, it.unit_cost,
                            it.price, rel, sdown, int(pieces[i].sum()),
                            round(float(sold[i].sum(axis=1).mean()), 2), round(float(waste[i].sum(axis=1).mean()), 2),
                            round(float(lost[i].sum(axis=1).mean()), 2)))
    return BakePlan(plan.open_hour, plan.close_hour, plan.release_times, plan.dropped_times, out, plan.assumptions)


def _cover_end(cover: str, expiry: np.ndarray, starts: list[int], j: int, n_slots: int) -> np.ndarray:
    """(I,) the slot where release j's cover ends: its pieces' expiry, or the next release (``next_release``)."""
    s1 = starts[j + 1] if j + 1 < len(starts) else n_slots
    return np.minimum(s1, expiry[:, j]) if cover == "next_release" else expiry[:, j].copy()


def _quantile_target(demand: np.ndarray, s0: int, ends: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """(I,) the newsvendor shelf target: the quantile at each item's critical ratio of the demand from slot ``s0`` to
    ``ends`` over the paths (inverted empirical CDF)."""
    n_items, n = demand.shape[:2]
    cum = np.concatenate([np.zeros((n_items, n, 1), np.int64), np.cumsum(demand[:, :, s0:], axis=2)], axis=2)
    covered = np.take_along_axis(cum, (ends - s0)[:, None, None].repeat(n, axis=1), axis=2)[:, :, 0]
    rank = np.clip(np.ceil(cr * n).astype(int) - 1, 0, n - 1)
    return np.where(cr > 0, np.take_along_axis(np.sort(covered, axis=1), rank[:, None], axis=1)[:, 0], 0)


def top_up_cost(demand: np.ndarray, expiry: np.ndarray, starts: list[int], cost: np.ndarray, margin: np.ndarray,
                targets: np.ndarray) -> np.ndarray:
    """Expected waste cost + lost margin per item and candidate (I, C) of filling the shelf up to ``targets``
    (I, C, k) at each release, over the demand paths (I, n, T); pieces sell oldest first and go stale at their
    batch's ``expiry`` slot (I, k) or at closing. The same day as the plan's own walk, for many targets at once."""
    n_items, n, n_t = demand.shape
    c, k = targets.shape[1], targets.shape[2]
    stock = np.zeros((k, n_items, c, n), dtype=np.int32)  # batch-major: each batch's slice is contiguous
    waste = np.zeros((n_items, c, n), dtype=np.int32)
    lost = np.zeros((n_items, c, n), dtype=np.int32)
    first = min(starts)
    if first > 0:
        lost += demand[:, None, :, :first].sum(axis=2, dtype=np.int32)
    events = {int(x) for x in np.unique(expiry)}
    rem = np.empty((n_items, c, n), dtype=np.int32)
    take = np.empty_like(rem)
    for t in range(first, n_t):
        for j in range(k):
            if starts[j] == t:
                fresh = sum(stock[b] * (expiry[:, b] > t)[:, None, None] for b in range(k))
                stock[j] += np.maximum(targets[:, :, j][:, :, None] - fresh, 0).astype(np.int32)
        if t in events:  # batches going stale now are thrown away
            for b in range(k):
                gone = expiry[:, b] == t
                if gone.any():
                    waste[gone] += stock[b][gone]
                    stock[b][gone] = 0
        rem[...] = demand[:, None, :, t]
        for b in range(k):
            np.minimum(stock[b], rem, out=take)
            stock[b] -= take
            rem -= take
        lost += rem
    waste += stock.sum(axis=0)
    return (waste * cost[:, None, None] + lost * margin[:, None, None]).mean(axis=2)


def search_targets(demand: np.ndarray, expiry: np.ndarray, starts: list[int], cost: np.ndarray,
                   margin: np.ndarray, init: np.ndarray, passes: int = 2, span: int = 3,
                   max_paths: int = 400) -> np.ndarray:
    """(I, k) shelf targets that minimise the expected cost of the top-up rule on the plan's own demand paths.

    Why a search and not one newsvendor per release: with top-up, pieces left at a release are not lost, they lower
    the next fill, so an early release's overage costs less than a piece's cost and a late one's its full cost;
    the per-release newsvendor cannot see that. Coordinate descent from the newsvendor targets, each release's
    target tried within ``span`` pieces of the current one, items independently (their costs add up); the first
    ``max_paths`` paths keep it to a fraction of a second a store-day."""
    d = demand[:, :max_paths]
    best = init.astype(np.int64).copy()
    k = best.shape[1]
    offsets = np.arange(-span, span + 1)
    rows = np.arange(best.shape[0])
    for _ in range(passes):
        moved = False
        for j in range(k):
            cand = np.repeat(best[:, None, :], len(offsets), axis=1)
            cand[:, :, j] = np.maximum(best[:, j][:, None] + offsets[None, :], 0)
            e = top_up_cost(d, expiry, starts, cost, margin, cand)
            e = e + 1e-9 * np.abs(offsets)[None, :]  # ties: keep the current target
            pick = np.argmin(e, axis=1)
            new = cand[rows, pick, j]
            moved |= bool((new != best[:, j]).any())
            best[:, j] = new
        if not moved:
            break
    return best


def _step(t: int, stock: np.ndarray, expiry: np.ndarray, d: np.ndarray, waste: np.ndarray, sold: np.ndarray,
          lost_j: np.ndarray) -> None:
    """One slot: expired batches go to waste, then demand takes the oldest fresh pieces first; the rest is lost."""
    rem = d.copy()
    for b in range(stock.shape[2]):
        gone = (expiry[:, b] <= t)[:, None]
        waste[:, :, b] += stock[:, :, b] * gone
        stock[:, :, b] = np.where(gone, 0, stock[:, :, b])
        take = np.minimum(stock[:, :, b], rem)
        stock[:, :, b] -= take
        sold[:, :, b] += take
        rem = rem - take
    lost_j += rem


def _sell_down(it: BakeItem, i: int, sd: SellDownSettings, sd_slot: int, at_sd: np.ndarray, expiry: np.ndarray,
               demand: np.ndarray, extra: np.ndarray | None, price: float, open_h: float, slot_h: float,
               n_slots: int) -> SellDown | None:
    """Coupon or not: pieces on the shelf at the window's start that last until closing, sold to the window's
    demand with and without the coupon (its lift); offered when the revenue with the coupon beats the revenue
    without it, i.e. the saved pieces bring more than the discount given on pieces that would have sold anyway."""
    t = open_h + sd_slot * slot_h
    alive = expiry[i] >= n_slots  # batches still fresh at closing: their leftovers expire tonight
    on_shelf = (at_sd[i] * alive[None, :]).sum(axis=1)
    if not alive.any() or float(on_shelf.mean()) <= 0:
        return None
    base = demand[i, :, sd_slot:].sum(axis=1)
    lifted = base + (extra[i] if extra is not None else 0)
    s0, s1 = np.minimum(on_shelf, base), np.minimum(on_shelf, lifted)
    leftover = float((on_shelf - s0).mean())
    if leftover < max(sd.min_saved_pieces, 0.05):  # too little left for a coupon to save enough: nothing to say
        return None
    saved = float((s1 - s0).mean())
    effect = float((s1 * price * (1 - sd.discount) - s0 * price).mean())
    given = float(s0.mean()) * price * sd.discount
    offer = saved >= sd.min_saved_pieces and effect > 0
    pct = f"{sd.discount:.0%}"
    few = f" (fewer than {sd.min_saved_pieces:g} pc: not worth a coupon)" if saved < sd.min_saved_pieces else ""
    if offer:
        gain = saved * price * (1 - sd.discount)
        reason = (f"Offer an app coupon at {pct} off from {hhmm(t)}: about {_pc(leftover)} would be thrown away "
                  f"tonight; the coupon should sell {_pc(saved)} more (+${effect:.2f}: ${gain:.2f} "
                  f"on the saved pieces, ${given:.2f} of discount on pieces that sell anyway).")
    else:
        reason = (f"No coupon: about {_pc(leftover)} left tonight, but {pct} off would sell only {_pc(saved)} "
                  f"more{few} and change revenue by ${effect:+.2f}. Throw away the leftovers at closing.")
    return SellDown(it.item_id, it.name, t, offer, sd.discount, sd.lift, round(leftover, 2), round(saved, 2),
                    round(effect, 2), reason)


def _reason(it: BakeItem, t: float, q: int, target: int, dmean: float, carried: float, until: float,
            late_first: bool, rule: str = "top_up") -> str:
    span = f"{hhmm(t)}-{hhmm(until)}"
    late = " Demand before this first release is lost." if late_first else ""
    if it.shelf_hours < 24 and abs(until - (t + it.shelf_hours)) < 0.01:
        late += f" The pieces go stale at {hhmm(until)}: demand after that waits for the next release."
    if carried >= 0.05 and rule == "top_up":  # the action is the shelf level: count what is still fresh
        if target == 0:
            return f"Nothing at {hhmm(t)}: demand {span} is usually {_pc(dmean)} and fresh pieces cover it.{late}"
        return (f"Fill the shelf up to {target} pc at {hhmm(t)} for {span} (usually {_pc(dmean)} sell then), counting "
                f"the pieces still fresh: usually {f'about {q} pc' if q else 'nothing'} to put out (about "
                f"{_pc(carried)} left from earlier)."
                f"{late}")
    have = ""
    if carried >= 0.05:  # the action when the shelf differs from the expectation
        have = (f"; about {_pc(carried)} still fresh from earlier are counted (if the shelf holds a different number, "
                f"top it up to {target} pc)")
    if q == 0:
        return f"Nothing at {hhmm(t)}: demand {span} is usually {_pc(dmean)}{have}.{late}"
    return f"Put out {q} pc at {hhmm(t)} for {span} (usually {_pc(dmean)} sell then){have}.{late}"
