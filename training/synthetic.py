"""A small synthetic daily panel shaped like the feature store's ``daily`` dataset, with its true mean.

Why: tests and benchmarks must run without the generator, and oracle logic needs the latent mean to check that
scoring the truth gives the floor. Weekly seasonality, trend, a late store, a late product, intermittent products,
negative-binomial noise and stock-out censoring (observed sales cut below demand) are all present.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_daily(
    n_stores: int = 3,
    n_products: int = 8,
    days: int = 140,
    start: str = "2025-06-01",
    alpha: float = 0.15,
    censor_rate: float = 0.03,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows ``store_id, product_id, date, qty, censored, true_mean`` plus known-in-advance and unknown exogenous.

    The last store opens at two thirds of the period and the last product launches at one half (new segments);
    about a quarter of products are intermittent (mean < 1/day).
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    dow_effect = np.array([0.9, 0.95, 1.0, 1.0, 1.1, 1.25, 0.8])
    holidays = set(rng.choice(days, size=max(1, days // 40), replace=False))
    promo_days = rng.random(days) < 0.1
    weather = rng.normal(0, 1, days)
    rows = []
    for s in range(1, n_stores + 1):
        store_scale = rng.uniform(0.6, 1.6)
        open_idx = int(days * 2 / 3) if (s == n_stores and n_stores > 1) else 0
        for p in range(1, n_products + 1):
            base = rng.uniform(0.3, 0.9) if p % 4 == 0 else rng.uniform(2, 15)
            launch_idx = days // 2 if (p == n_products and n_products > 1) else 0
            first = max(open_idx, launch_idx)
            t = np.arange(first, days)
            trend = 1 + 0.002 * (t - first)
            dow = dates[t].dayofweek.to_numpy()
            hol = np.isin(t, list(holidays))
            mu = base * store_scale * dow_effect[dow] * trend * np.where(hol, 0.7, 1.0)
            mu = mu * np.where(promo_days[t], 1.3, 1.0) * np.exp(0.05 * weather[t])
            ramp = np.minimum(1.0, (t - first + 1) / 14)  # a new store or product ramps up over two weeks
            mu = mu * (0.5 + 0.5 * ramp)
            lam = rng.gamma(1 / alpha, alpha, size=len(t)) * mu
            demand = rng.poisson(lam)
            censored = rng.random(len(t)) < censor_rate
            qty = np.where(censored, np.floor(demand * rng.uniform(0.3, 0.9, len(t))), demand)
            rows.append(
                pd.DataFrame(
                    {
                        "store_id": s,
                        "product_id": p,
                        "date": dates[t],
                        "qty": qty.astype(float),
                        "censored": censored,
                        "true_mean": mu,
                        "day_of_week": dow,
                        "is_holiday": hol.astype(int),
                        "coupon_campaign": promo_days[t].astype(int),
                        "days_since_store_open": t - open_idx,
                        "days_since_launch": t - launch_idx,
                        "temperature": weather[t],  # observed weather: not known in advance
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


SYNTHETIC_KNOWN = ["day_of_week", "is_holiday", "coupon_campaign", "days_since_store_open", "days_since_launch"]


def synthetic_manifest(daily: pd.DataFrame) -> dict:
    """A manifest in the feature store's spirit: watermark, counts and which features are known in advance."""
    return {
        "watermark": str(pd.Timestamp(daily["date"].max()).date()),
        "row_counts": {"daily": len(daily)},
        "features": {
            c: {"known_in_advance": c in SYNTHETIC_KNOWN}
            for c in daily.columns
            if c not in ("store_id", "product_id", "date", "qty", "censored", "true_mean")
        },
    }
