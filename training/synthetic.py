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
    import holidays as hol_lib

    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    dow_effect = np.array([0.9, 0.95, 1.0, 1.0, 1.1, 1.25, 0.8])
    cal = hol_lib.country_holidays("US", subdiv="NY", years=sorted(set(dates.year)))
    holidays = {i for i, d in enumerate(dates) if d.date() in cal}  # the calendar the forecast reads back
    rng.choice(days, size=max(1, days // 40), replace=False), rng.random(days)  # earlier draws: same stream kept
    weather = rng.normal(0, 1, days)
    campaigns = synthetic_campaigns(n_products, dates, np.random.default_rng(seed + 1))
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
            promo = np.zeros(len(t))
            for c in campaigns:
                if c["product_id"] == p:
                    promo = np.maximum(promo, np.where((dates[t] >= c["valid_from"]) & (dates[t] <= c["valid_to"]),
                                                       c["discount_pct"], 0.0))
            mu = mu * (1 + promo / 100.0 * 1.5) * np.exp(0.05 * weather[t])
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
                        "dow": dow,
                        "is_holiday": hol.astype(int),
                        "campaign": (promo > 0).astype(int),
                        "campaign_discount_pct": promo,
                        "days_since_store_open": t - open_idx,
                        "days_since_launch": t - launch_idx,
                        "temperature": weather[t],  # observed weather: not known in advance
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


SYNTHETIC_KNOWN = ["dow", "is_holiday", "campaign", "campaign_discount_pct", "days_since_store_open",
                   "days_since_launch"]


def synthetic_campaigns(n_products: int, dates: pd.DatetimeIndex, rng: np.random.Generator) -> list[dict]:
    """Two product campaigns of 5-10 days per product (coupon templates' validity windows, 20-30% off)."""
    out = []
    for p in range(1, n_products + 1):
        for _ in range(2):
            first = int(rng.integers(0, len(dates) - 5))
            last = min(len(dates) - 1, first + int(rng.integers(4, 10)))
            out.append({"product_id": p, "category": None, "discount_pct": float(rng.choice([20.0, 30.0])),
                        "valid_from": dates[first], "valid_to": dates[last]})
    return out


def synthetic_manifest(daily: pd.DataFrame, campaigns: list[dict] | None = None) -> dict:
    """A manifest in the feature store's spirit: watermark, counts, which features are known in advance, and the
    planned calendar (store opens, product launches, campaign windows) the future is built from.

    ``campaigns`` default: those ``synthetic_daily`` generated, read back from the panel's campaign days."""
    d = daily.assign(date=pd.to_datetime(daily["date"]))
    opened = (d["date"] - pd.to_timedelta(d["days_since_store_open"], unit="D")).groupby(d["store_id"]).min()
    launched = (d["date"] - pd.to_timedelta(d["days_since_launch"], unit="D")).groupby(d["product_id"]).min()
    if campaigns is None and "campaign_discount_pct" in d:
        c = d[d["campaign_discount_pct"] > 0].drop_duplicates(["product_id", "date"]).sort_values(["product_id",
                                                                                                   "date"])
        run = ((c["date"].diff().dt.days != 1) | (c["product_id"].diff() != 0)
               | (c["campaign_discount_pct"].diff() != 0)).cumsum()
        campaigns = [{"product_id": int(g["product_id"].iloc[0]), "category": None,
                      "discount_pct": float(g["campaign_discount_pct"].max()), "valid_from": g["date"].min(),
                      "valid_to": g["date"].max()} for _, g in c.groupby(run)]
    iso = lambda v: None if pd.isna(v) else pd.Timestamp(v).date().isoformat()  # noqa: E731
    return {
        "calendar": {
            "holidays": {"country": "US", "subdiv": "NY"},
            "stores": [{"store_id": int(k), "open_date": iso(v), "close_date": None} for k, v in opened.items()],
            "campaigns": [{**c, "valid_from": iso(c["valid_from"]), "valid_to": iso(c["valid_to"])}
                          for c in campaigns or []],
        },
        "products": [{"product_id": int(k), "category": None, "launch_date": iso(v), "retire_date": None}
                     for k, v in launched.items()],
        "watermark": str(pd.Timestamp(daily["date"].max()).date()),
        "row_counts": {"daily": len(daily)},
        "features": {
            c: {"known_in_advance": c in SYNTHETIC_KNOWN}
            for c in daily.columns
            if c not in ("store_id", "product_id", "date", "qty", "censored", "true_mean")
        },
    }
