"""The realistic scenario's effects (issue #16), switched on by a scenario's ``realism`` block.

Why a module of its own: every effect here is switched on by the scenario (the default history, realistic.yaml, has
them; classic.yaml, the default before issue 16, has none), and the classic history must stay byte-for-byte what it
was (other figures are measured on it). Each effect draws from its own random stream (``[seed, 11..]``), never from
the streams the classic history uses, and the classic code paths in world / demand / simulate / orders stay
untouched.

Effects: store archetypes (own weekday factors, hourly profiles, year-end and New York-holiday factors); store-day
shocks; a daily temperature with a day-ahead forecast (both written to ``t_weather_daily``) that moves the iced / hot
mix; everyday coupon push days that lift a category; campaigns that cannibalise like products and leave a dip
behind; substitution of part of the demand lost to a stockout; lognormal-Poisson (not negative binomial) counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import holidays as holidays_lib
import numpy as np

from generator.catalog import RealismSpec

_STREAM_TEMP, _STREAM_PUSH, _STREAM_SHOCK, _STREAM_NOISE, _STREAM_SUB = 11, 12, 13, 14, 15


@dataclass
class RealWorld:
    """The realistic effects resolved over the world's axes."""

    spec: RealismSpec
    archetype: list[str]  # per store
    store_factor: np.ndarray  # (S, D) weekday x year-end x NY holiday, replaces the chain-wide weekday factor
    hour_share: np.ndarray  # (S, D, H) the archetypes' hourly profiles over each store's open hours
    temp_c: np.ndarray  # (D,) actual daily mean temperature
    temp_normal_c: np.ndarray  # (D,) its seasonal normal
    fc_err: np.ndarray  # (D,) standard normal forecast errors, scaled by the lead in ``weather_daily_table``
    push: np.ndarray  # (P, D) bool: an everyday coupon push for the product's category that day
    substitute: np.ndarray  # (P,) the like item bought instead on a stockout (-1: none)


def archetypes_of(spec: RealismSpec, store_ids: list[int]) -> list[str]:
    """Archetype per store: listed ids first; others (new, cloned stores) cycle through ``default_cycle``."""
    cycle = spec.default_cycle or sorted(spec.archetypes)
    out, k = [], 0
    for sid in store_ids:
        if sid in spec.store_archetype:
            out.append(spec.store_archetype[sid])
        else:
            out.append(cycle[k % len(cycle)])
            k += 1
    return out


def _store_factor(w, spec: RealismSpec, arch: list[str]) -> np.ndarray:
    """(S, D): the archetype's weekday shape, normalised so the base-weighted chain mean of each weekday equals the
    catalog's calibrated factor (chain totals per weekday keep the business report's level, stores differ around
    it); Dec 26-31 the archetype's year-end factor replaces the chain-wide one; NY-only holidays cut offices."""
    cat = w.catalog.demand
    base = np.array([s.base_units for s in w.stores])
    shape = np.array([spec.archetypes[a].weekday_factors for a in arch])  # (S, 7)
    norm = (base[:, None] * shape).sum(0) / base.sum()
    wk = shape * (np.array(cat.weekday_factors) / norm)[None, :]
    out = wk[:, w.dow]  # (S, D)
    dates = [w.start + dt.timedelta(days=i) for i in range(len(w.days))]
    year_end = np.array([d.month == 12 and 26 <= d.day <= 31 for d in dates])
    ye = np.array([spec.archetypes[a].year_end_factor for a in arch])
    # the world's day_factor already holds the catalog's chain-wide year-end factor on those days: swap it out
    out[:, year_end] *= ye[:, None] / cat.holidays.year_end_week
    years = sorted({d.year for d in dates})
    us, ny = holidays_lib.US(years=years), holidays_lib.US(subdiv="NY", years=years)
    ny_only = np.array([d in ny and d not in us for d in dates])
    nyf = np.array([spec.archetypes[a].ny_holiday_factor for a in arch])
    out[:, ny_only] *= nyf[:, None]
    return out


def _hour_share(w, spec: RealismSpec, arch: list[str]) -> np.ndarray:
    """(S, D, H): each store's archetype profile (weekday / weekend) over its open hours, summing to 1 per day."""
    weekend = w.dow >= 5
    rows = []
    for s_i, a in enumerate(arch):
        p = spec.archetypes[a]
        hw = np.array([p.hourly_weekday.get(int(h), 0.0) for h in w.hours])
        he = np.array([p.hourly_weekend.get(int(h), 0.0) for h in w.hours])
        rows.append(np.where(weekend[:, None], he[None, :], hw[None, :]) * w.hour_open[s_i][None, :])
    share = np.stack(rows)
    tot = share.sum(-1, keepdims=True)
    return np.divide(share, tot, out=np.zeros_like(share), where=tot > 0)


def _temperature(w, spec: RealismSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Actual, normal and day-ahead forecast temperature per day (D,): normal = mean - amplitude x cos(season),
    anomaly AR(1) with the configured stationary sd; forecast = actual + N(0, forecast_sd)."""
    t = spec.temperature
    rng = np.random.default_rng([w.seed, _STREAM_TEMP])
    doy = np.array([(d - d.astype("datetime64[Y]")).astype(int) for d in w.days])
    normal = t.mean_c - t.amplitude_c * np.cos(2 * np.pi * (doy - t.coldest_doy) / 365.25)
    n = len(w.days)
    eps = rng.normal(0.0, t.anomaly_sd_c * np.sqrt(1 - t.ar1**2), size=n)
    anom = np.empty(n)
    anom[0] = rng.normal(0.0, t.anomaly_sd_c)
    for i in range(1, n):
        anom[i] = t.ar1 * anom[i - 1] + eps[i]
    actual = normal + anom
    fc_err = rng.normal(0.0, 1.0, size=n)  # scaled by the lead in weather_daily_table
    return actual, normal, fc_err


def coldness(w) -> np.ndarray:
    """0 at the summer normal, 1 at the winter normal, from the actual temperature: the default's seasonal coldness
    on a normal day, plus ``response`` x the anomaly (a cold snap sells hot drinks, a warm spell iced ones).
    Clipped so the iced / hot factors stay positive."""
    t = w.rz.spec.temperature
    season = (t.mean_c + t.amplitude_c - w.rz.temp_normal_c) / (2 * t.amplitude_c)
    anom = (w.rz.temp_c - w.rz.temp_normal_c) / (2 * t.amplitude_c)
    return np.clip(season - t.response * anom, -0.25, 1.25)


def _push(w, spec: RealismSpec) -> np.ndarray:
    """(P, D) coupon push days, drawn per category x day."""
    rng = np.random.default_rng([w.seed, _STREAM_PUSH])
    cats = sorted({p.category for p in w.products})
    cat_of = np.array([cats.index(p.category) for p in w.products])
    days = rng.random((len(cats), len(w.days))) < spec.coupons.rate
    return days[cat_of]


def _substitutes(w) -> np.ndarray:
    """(P,) the like item: the most popular other product of the same category and temperature (iced / hot / food);
    the same category alone when none; -1 when the category has a single product."""
    prods = w.products
    out = np.full(len(prods), -1)
    for i, p in enumerate(prods):
        like = [j for j, q in enumerate(prods) if j != i and q.category == p.category and q.is_iced == p.is_iced]
        like = like or [j for j, q in enumerate(prods) if j != i and q.category == p.category]
        if like:
            out[i] = max(like, key=lambda j: (prods[j].popularity, -j))
    return out


def build(w) -> RealWorld:
    spec: RealismSpec = w.scenario.realism
    arch = archetypes_of(spec, [s.id for s in w.stores])
    actual, normal, fc_err = _temperature(w, spec)
    return RealWorld(
        spec=spec, archetype=arch, store_factor=_store_factor(w, spec, arch), hour_share=_hour_share(w, spec, arch),
        temp_c=actual, temp_normal_c=normal, fc_err=fc_err, push=_push(w, spec), substitute=_substitutes(w),
    )


# --- demand -------------------------------------------------------------------------------------------------------


def coupon_factor(w) -> np.ndarray:
    """(P, D) demand factor of everyday coupon pushes, divided by its mean so the history's level stays calibrated."""
    c = w.rz.spec.coupons
    return np.where(w.rz.push, c.lift, 1.0) / (1 + c.rate * (c.lift - 1))


def campaign_effects(w, share: np.ndarray, boost: np.ndarray) -> np.ndarray:
    """Cannibalisation and the post-campaign dip on top of the campaign lifts already in ``boost`` (P, D).

    A campaign's extra units (lift - 1 of the product's share) come partly (``cannibalisation``) out of the like
    products' (same category, active) shares, pro rata, each losing at most ``max_like_loss``; after the campaign
    the product dips by ``post_dip``, decaying with ``post_dip_days`` (customers stocked up on the deal)."""
    ce = w.rz.spec.campaigns
    out = boost.copy()
    cat = np.array([p.category for p in w.products])
    day = np.arange(len(w.days))
    for c in w.campaigns:
        p = c["product_id"] - 1
        i0, i1 = max(0, w.day_index(c["start"])), max(0, w.day_index(c["end"]) + 1)
        like = (cat == cat[p]) & (np.arange(w.P) != p)
        extra = (c["lift"] - 1) * share[p, i0:i1]  # (days,)
        pool = (share[like, i0:i1]).sum(0)
        loss = np.divide(ce.cannibalisation * extra, pool, out=np.zeros_like(pool), where=pool > 0)
        out[like, i0:i1] *= 1 - np.minimum(loss, ce.max_like_loss)[None, :]
        since = day - (w.day_index(c["end"]) + 1)  # days since it ended (a campaign before the history: decayed)
        out[p] *= np.where(since >= 0, 1 - ce.post_dip * np.exp(-since / ce.post_dip_days), 1.0)
    return out


def sample_daily(w, mu: np.ndarray) -> np.ndarray:
    """Daily counts (S, P, D_hist): Poisson around mu x store-day shock x lognormal product-day noise.

    The store-day shock (one per store and day, all products) makes store totals vary far more than independent
    product noise would; the lognormal mixture has a heavier right tail than the gamma of a negative binomial with
    the same variance. Both have mean 1, so the expected units (the ground truth) keep their meaning."""
    spec = w.rz.spec
    m = mu[:, :, : w.n_hist]
    sd = spec.store_day_sd
    shock = np.exp(np.random.default_rng([w.seed, _STREAM_SHOCK]).normal(-sd**2 / 2, sd, size=(w.S, 1, w.n_hist)))
    rng = np.random.default_rng([w.seed, _STREAM_NOISE])
    s = spec.noise.sd_log
    lam = m * shock * np.exp(rng.normal(-s**2 / 2, s, size=m.shape))
    return rng.poisson(lam)


def truth_alpha(w) -> float:
    """NB alpha with the same variance as the realistic daily noise (store-day shock x lognormal mixture)."""
    spec = w.rz.spec
    return float(np.exp(spec.store_day_sd**2 + spec.noise.sd_log**2) - 1)


def substitution_rng(w) -> np.random.Generator:
    return np.random.default_rng([w.seed, _STREAM_SUB])


# --- source tables ------------------------------------------------------------------------------------------------


def weather_daily_table(w) -> dict[str, np.ndarray]:
    """t_weather_daily: per history day the actual mean temperature and the forecast issued the day before; then
    ``forecast_days`` future days forecast on the history's last day (temp_c NULL), error growing with the lead."""
    t = w.rz.spec.temperature
    n = min(len(w.days), w.n_hist + t.forecast_days)
    idx = np.arange(n)
    lead = np.where(idx < w.n_hist, 1, idx - (w.n_hist - 1))
    sd = t.forecast_sd_c + t.forecast_sd_growth_c * (lead - 1)
    fc = np.round(w.rz.temp_c[:n] + sd * w.rz.fc_err[:n], 1)
    issued = w.days[:n] - lead.astype("timedelta64[D]")  # the first day's forecast: the day before the history
    actual = np.where(idx < w.n_hist, np.round(w.rz.temp_c[:n], 1), np.nan)
    return {"weather_date": w.days[:n], "temp_c": actual, "temp_forecast_c": fc, "forecast_issued_on": issued}
