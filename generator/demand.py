"""Latent demand: the expected units per store x product x day (the ground truth) and the sampled counts.

Why this shape: mean = store level x ramp-up x weekday x holiday/weather x product share (Zipf, seasonal drift,
launch boost, campaign lift); counts are negative binomial (gamma-Poisson), split into local hours with a
multinomial on the store's hourly profile, so both daily and intraday noise look like real app orders.
"""

from __future__ import annotations

import numpy as np

from generator import realism
from generator.world import World


def coldness(w: World) -> np.ndarray:
    """0 in late July, 1 in late January: drives iced drinks down and hot drinks up from October to February."""
    doy = np.array([(d.astype("datetime64[D]") - d.astype("datetime64[Y]")).astype(int) for d in w.days])
    return (1 + np.cos(2 * np.pi * (doy - 20) / 365.25)) / 2


def expected_units(w: World) -> np.ndarray:
    """Mean units (S, P, D) before any censoring; zero where the store is closed or the product inactive."""
    d = w.catalog.demand
    rng = np.random.default_rng([w.seed, 2])
    age = w.store_age.astype(float)
    ramp = 1 - (1 - d.ramp_start) * np.exp(-np.clip(age, 0, None) / d.ramp_days)
    base = np.array([s.base_units for s in w.stores]) * d.scale
    if w.rz is None:
        wdf = np.array(d.weekday_factors)[w.dow][None, :]
    else:  # store archetypes: own weekday shape, year-end and NY-holiday factors (generator.realism)
        wdf = w.rz.store_factor
    level = base[:, None] * ramp * wdf * w.day_factor[None, :] * w.store_open  # (S, D)

    cold = coldness(w) if w.rz is None else realism.coldness(w)
    pop = np.array([p.popularity for p in w.products])
    is_drink = np.array([p.is_drink for p in w.products])
    iced = np.array([bool(p.is_iced) for p in w.products])
    season = np.where(
        is_drink[:, None],
        np.where(iced[:, None], 1 - d.seasonal_iced_drop * cold[None, :], 1 + d.seasonal_hot_rise * cold[None, :]),
        1.0,
    )
    weight = pop[:, None] * season * w.prod_active  # (P, D)
    share = np.zeros_like(weight)
    for mask, total in ((is_drink, 1 - d.food_share), (~is_drink, d.food_share)):
        s = weight[mask].sum(0, keepdims=True)
        share[mask] = np.divide(weight[mask], s, out=np.zeros_like(weight[mask]), where=s > 0) * total

    boost = np.ones_like(weight)
    day_num = np.arange(len(w.days))
    for p in w.products:
        if p.launch is not None and p.launch > w.start:
            since = day_num - w.day_index(p.launch)
            boost[p.product_id - 1] += np.where(since >= 0, d.launch_boost * np.exp(-since / d.launch_boost_days), 0)
    for c in w.campaigns:
        i0, i1 = w.day_index(c["start"]), w.day_index(c["end"])
        boost[c["product_id"] - 1, max(0, i0): max(0, i1 + 1)] *= c["lift"]
    if w.rz is not None:
        boost = realism.campaign_effects(w, share, boost) * realism.coupon_factor(w)

    taste = np.exp(rng.normal(-d.store_product_sd**2 / 2, d.store_product_sd, size=(w.S, w.P)))
    return level[:, None, :] * (share * boost)[None, :, :] * taste[:, :, None]


def sample_hourly(w: World, mu: np.ndarray) -> np.ndarray:
    """Latent unit counts (S, P, D_hist, H): negative binomial per day (lognormal-Poisson with store-day shocks in
    the realistic scenario), multinomial over the hourly profile."""
    k = w.catalog.demand.nb_dispersion
    rng = np.random.default_rng([w.seed, 3])
    m = mu[:, :, : w.n_hist]
    if w.rz is None:
        lam = m * rng.gamma(k, 1.0 / k, size=m.shape)
        daily = rng.poisson(lam)
    else:  # store-day shocks x lognormal-Poisson counts (generator.realism); the hourly split below is the same
        daily = realism.sample_daily(w, mu)
    share = w.hour_share[:, : w.n_hist, :]  # (S, D, H)
    share = np.where(share.sum(-1, keepdims=True) > 0, share, 1.0 / w.H)
    pvals = np.broadcast_to(share[:, None, :, :], daily.shape + (w.H,))
    return rng.multinomial(daily, pvals).astype(np.int32)
