"""Resolve catalog + scenario into dense arrays (stores x products x materials x days x hours).

Why arrays: every later stage (demand, inventory, orders) is vectorised numpy over these axes, so the full history
generates in seconds instead of looping over half a million orders in Python.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import numpy as np

from forecasting.errors import ConfigError
from generator.catalog import WEEKDAYS, Catalog, Scenario, StoreSpec


@dataclass(frozen=True)
class Product:
    product_id: int
    name: str
    category: str
    is_drink: bool
    is_iced: bool | None
    price: float
    launch: dt.date | None
    retire: dt.date | None
    recipe: dict[str, float]
    popularity: float


@dataclass
class World:
    """Everything the generator samples from; ``n_hist`` days of history, then a padding for forecasts."""

    catalog: Catalog
    scenario: Scenario
    seed: int
    start: dt.date
    end: dt.date
    n_hist: int
    days: np.ndarray  # datetime64[D], n_hist + pad
    dow: np.ndarray  # 0 = Monday
    stores: list[StoreSpec]
    products: list[Product]
    material_keys: list[str]
    bom: np.ndarray  # (P, M) qty per unit
    hours: np.ndarray  # local hours covered by any store
    store_open: np.ndarray  # (S, D) bool: open for business
    store_age: np.ndarray  # (S, D) days since opening (negative before)
    hour_open: np.ndarray  # (S, H) bool
    hour_share: np.ndarray  # (S, D, H) expected share of the day's units per local hour
    prod_active: np.ndarray  # (P, D) bool
    day_factor: np.ndarray  # (D,) holidays x weather (chain-wide)
    weather: list[tuple[dt.date, str, float]]
    campaigns: list[dict] = field(default_factory=list)
    utc_offset_s: np.ndarray | None = None  # (D, H) seconds to add to local time to get UTC
    rz: Any = None  # generator.realism.RealWorld when the scenario sets ``realism``; None = the classic history

    @property
    def S(self) -> int:
        return len(self.stores)

    @property
    def P(self) -> int:
        return len(self.products)

    @property
    def M(self) -> int:
        return len(self.material_keys)

    @property
    def H(self) -> int:
        return len(self.hours)

    def day_index(self, d: dt.date) -> int:
        return (d - self.start).days


def _stores(cat: Catalog, sc: Scenario) -> list[StoreSpec]:
    stores = {s.id: s for s in cat.stores}
    for ov in sc.stores:
        if ov.id not in stores:
            raise ConfigError(f"scenario: stores: unknown store id {ov.id}")
        upd = {k: v for k, v in ov.model_dump(exclude={"id"}).items() if v is not None}
        stores[ov.id] = stores[ov.id].model_copy(update=upd)
    ordered = list(stores.values())
    if sc.n_stores is not None:
        nxt = max(s.id for s in ordered) + 1  # beyond the catalog: its stores cloned in turn (scale benchmarks)
        clones = [ordered[i % len(ordered)] for i in range(max(0, sc.n_stores - len(ordered)))]
        ordered = ordered[: sc.n_stores] + [s.model_copy(update={"id": nxt + i, "name": f"{s.name} #{nxt + i}"})
                                            for i, s in enumerate(clones)]
    for ev in sc.events:
        if ev.type == "new_store":
            if any(s.id == ev.store.id for s in ordered):
                raise ConfigError(f"scenario: new_store: store id {ev.store.id} exists already")
            ordered.append(ev.store)
    return ordered


def _products(cat: Catalog, sc: Scenario) -> list[Product]:
    d = cat.demand
    drinks = list(cat.drinks) + [ev.product for ev in sc.events if ev.type == "launch"]
    out: list[Product] = []
    for i, p in enumerate(drinks):
        pop = p.popularity if p.popularity is not None else (i + 1) ** -d.drink_zipf
        recipe = dict(p.recipe)
        for key, q in cat.packaging["iced" if p.iced else "hot"].items():
            recipe[key] = recipe.get(key, 0.0) + q
        out.append(Product(len(out) + 1, p.name, p.cat, True, p.iced, p.price, p.launch, p.retire, recipe, pop))
    for i, f in enumerate(cat.food):
        recipe = {f"food:{f.name}": 1.0, **cat.packaging["food"]}
        pop = (i + 1) ** -d.food_zipf
        out.append(Product(len(out) + 1, f.name, f.cat, False, None, f.price, f.launch, f.retire, recipe, pop))
    names = {p.name for p in out}
    fixed = []
    for ev in sc.events:
        if ev.type == "product_dates":
            if ev.product not in names:
                raise ConfigError(f"scenario: product_dates: unknown product {ev.product!r}")
            fixed.append(ev)
    for ev in fixed:
        out = [
            Product(**{**p.__dict__, "launch": ev.launch or p.launch, "retire": ev.retire or p.retire})
            if p.name == ev.product else p
            for p in out
        ]
    for ev in sc.events:
        if ev.type == "launch":
            for k in ev.product.recipe:
                if k not in cat.materials:
                    raise ConfigError(f"scenario: launch {ev.product.name!r}: unknown material {k!r}")
    return out


def material_keys(cat: Catalog) -> list[str]:
    return list(cat.materials) + [f"food:{f.name}" for f in cat.food]


def _holiday_factors(cat: Catalog, days: list[dt.date]) -> tuple[np.ndarray, np.ndarray]:
    """Chain-wide demand factor and 'closed' flag from the US federal calendar (``holidays`` package)."""
    spec = cat.demand.holidays
    cal = holidays_lib.US(years=sorted({d.year for d in days}))
    factor = np.ones(len(days))
    closed = np.zeros(len(days), dtype=bool)
    thanksgiving = {d for d, n in cal.items() if n.startswith("Thanksgiving")}
    for i, day in enumerate(days):
        name = cal.get(day)
        if name:
            base = name.replace(" (observed)", "")
            if base in spec.closed:
                closed[i] = True
            factor[i] = min(factor[i], spec.factors.get(base, 1.0))
        if day.month == 12 and 26 <= day.day <= 31:
            factor[i] = min(factor[i], spec.year_end_week)
        if day - dt.timedelta(days=1) in thanksgiving:
            factor[i] = min(factor[i], spec.day_after_thanksgiving)
    return factor, closed


def _utc_offsets(tz: str, days: list[dt.date], hours: np.ndarray) -> np.ndarray:
    """Seconds from local wall time to UTC per (day, hour): DST-correct through zoneinfo."""
    zone = ZoneInfo(tz)
    out = np.zeros((len(days), len(hours)), dtype=np.int64)
    for i, day in enumerate(days):
        for j, h in enumerate(hours):
            local = dt.datetime(day.year, day.month, day.day, int(h), 30, tzinfo=zone)
            out[i, j] = -int(local.utcoffset().total_seconds())
    return out


def build_world(cat: Catalog, sc: Scenario, seed: int, pad_days: int = 21) -> World:
    """Resolve the scenario over the catalog; the random parts (weather days, campaigns) come from ``seed``."""
    rng = np.random.default_rng([seed, 1])
    stores = _stores(cat, sc)
    if not stores:
        raise ConfigError("scenario: no stores")
    start = sc.start_date or min(s.open_date for s in stores)
    end = sc.end_date
    if end < start:
        raise ConfigError(f"scenario: end_date {end} is before start_date {start}")
    n_hist = (end - start).days + 1
    n_days = n_hist + pad_days
    dates = [start + dt.timedelta(days=i) for i in range(n_days)]
    days = np.array(dates, dtype="datetime64[D]")
    dow = np.array([d.weekday() for d in dates])

    products = _products(cat, sc)
    mkeys = material_keys(cat)
    midx = {k: i for i, k in enumerate(mkeys)}
    bom = np.zeros((len(products), len(mkeys)))
    for p in products:
        for k, q in p.recipe.items():
            bom[p.product_id - 1, midx[k]] += q

    hours = np.arange(min(s.open_hour for s in stores), max(s.close_hour for s in stores))
    hour_open = np.array([(hours >= s.open_hour) & (hours < s.close_hour) for s in stores])

    factor, closed_all = _holiday_factors(cat, dates)
    closed_store = np.zeros((len(stores), n_days), dtype=bool)
    closed_store[:, closed_all] = True
    weather: list[tuple[dt.date, str, float]] = []
    for ev in sc.events:
        if ev.type == "closure" and start <= ev.date < start + dt.timedelta(days=n_days):
            i = (ev.date - start).days
            ids = ev.stores
            for s_i, s in enumerate(stores):
                if ids is None or s.id in ids:
                    closed_store[s_i, i] = True
            if ids is None:
                weather.append((ev.date, ev.kind, 0.0))
        elif ev.type == "weather" and start <= ev.date < start + dt.timedelta(days=n_days):
            factor[(ev.date - start).days] *= ev.demand_factor
            weather.append((ev.date, ev.kind, ev.demand_factor))
    if sc.random_weather and cat.demand.weather.events:
        taken = {w[0] for w in weather}
        cand = [i for i in range(n_hist) if factor[i] == 1.0 and not closed_all[i] and dates[i] not in taken]
        kinds = sorted(cat.demand.weather.kinds)
        pick = rng.choice(cand, size=min(cat.demand.weather.events, len(cand)), replace=False) if cand else []
        for i in sorted(int(x) for x in pick):
            month = dates[i].month
            options = [k for k in kinds if not (k == "snow" and month in range(4, 11))
                       and not (k == "heat_wave" and month not in (6, 7, 8, 9))] or kinds
            kind = options[int(rng.integers(len(options)))]
            lo, hi = cat.demand.weather.kinds[kind]
            f = round(float(rng.uniform(lo, hi)), 3)
            factor[i] *= f
            weather.append((dates[i], kind, f))
    weather.sort()

    open_idx = np.array([(s.open_date - start).days for s in stores])
    age = np.arange(n_days)[None, :] - open_idx[:, None]
    store_open = (age >= 0) & ~closed_store
    for s_i, s in enumerate(stores):
        if s.close_date is not None:
            store_open[s_i, max(0, (s.close_date - start).days):] = False

    prod_active = np.ones((len(products), n_days), dtype=bool)
    for p in products:
        if p.launch:
            prod_active[p.product_id - 1, : max(0, (p.launch - start).days)] = False
        if p.retire:
            prod_active[p.product_id - 1, max(0, (p.retire - start).days + 1):] = False

    hw = np.array([cat.demand.hourly_weekday.get(int(h), 0.0) for h in hours])
    he = np.array([cat.demand.hourly_weekend.get(int(h), 0.0) for h in hours])
    prof = np.where((dow >= 5)[:, None], he[None, :], hw[None, :])  # (D, H)
    share = prof[None, :, :] * hour_open[:, None, :]
    tot = share.sum(-1, keepdims=True)
    share = np.divide(share, tot, out=np.zeros_like(share), where=tot > 0)

    w = World(
        catalog=cat, scenario=sc, seed=seed, start=start, end=end, n_hist=n_hist, days=days, dow=dow,
        stores=stores, products=products, material_keys=mkeys, bom=bom, hours=hours, store_open=store_open,
        store_age=age, hour_open=hour_open, hour_share=share, prod_active=prod_active, day_factor=factor,
        weather=weather,
    )
    w.campaigns = _campaigns(w, rng)
    w.utc_offset_s = _utc_offsets(cat.timezone, dates, hours)
    if sc.realism is not None:  # after the campaigns: the default draws above are the same with or without it
        from generator import realism

        w.rz = realism.build(w)
        w.hour_share = w.rz.hour_share
    return w


def _campaigns(w: World, rng: np.random.Generator) -> list[dict]:
    """Product coupon campaigns: scenario ones plus ``demand.campaigns.count`` drawn from the seed."""
    spec = w.catalog.demand.campaigns
    by_name = {p.name: p for p in w.products}
    out = []
    for ev in w.scenario.events:
        if ev.type == "campaign":
            if ev.product not in by_name:
                raise ConfigError(f"scenario: campaign: unknown product {ev.product!r}")
            out.append({"product_id": by_name[ev.product].product_id, "start": ev.start, "end": ev.end,
                        "discount_pct": ev.discount_pct, "lift": ev.lift})
    if w.scenario.random_campaigns and spec.count and w.n_hist > 14:
        drinks = [p for p in w.products if p.is_drink][:30]
        for _ in range(spec.count):
            p = drinks[int(rng.integers(len(drinks)))]
            length = int(rng.integers(spec.days[0], spec.days[1] + 1))
            s_i = int(rng.integers(0, max(1, w.n_hist - length)))
            start = w.start + dt.timedelta(days=s_i)
            end = start + dt.timedelta(days=length - 1)
            if (p.launch and start < p.launch) or (p.retire and end > p.retire):
                continue
            out.append({"product_id": p.product_id, "start": start, "end": end,
                        "discount_pct": round(float(rng.uniform(*spec.discount_pct)), 2),
                        "lift": round(float(rng.uniform(*spec.lift)), 2)})
    return out


def supplier_schedule(w: World) -> dict[str, np.ndarray]:
    """Per supplier and ordering weekday: order today?, days to delivery, days covered (up to the next delivery).

    The incumbent orders on the last day that still reaches a delivery slot (order as late as possible), and
    covers demand until the following delivery arrives.
    """
    sup = w.catalog.suppliers
    n = len(sup)
    order_today = np.zeros((7, n), dtype=bool)
    lead = np.zeros((7, n), dtype=int)
    cover = np.zeros((7, n), dtype=int)
    for j, s in enumerate(sup):
        deliv = {WEEKDAYS.index(x) for x in s.delivery_weekdays.split(",")}

        def slot(day: int, s=s, deliv=deliv) -> int:  # first delivery day >= day + lead time
            k = day + s.lead_time_days
            while k % 7 not in deliv:
                k += 1
            return k

        for wd in range(7):
            e = slot(wd)
            order_today[wd, j] = slot(wd + 1) != e
            nxt = e + 1
            while nxt % 7 not in deliv:
                nxt += 1
            lead[wd, j] = e - wd
            cover[wd, j] = nxt - wd - 1
    return {"order_today": order_today, "lead": lead, "cover": cover}
