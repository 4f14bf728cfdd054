"""The ``twoway`` candidate: store x product forecasts rebuilt top-down (middle-out) from LightGBM's own forecasts.

Why: a store x product series sells a few units a day, so any per-series model's *level* is noisy (giving LightGBM
the true 14-day level of each series closes about half its gap to the oracle on the generated history). Its
aggregates are much less noisy: the store's total over its products ``L(s, d)``, the product's chain total
``P(p, d)`` and the chain total ``C(d)``. What they cannot say, how a store's sales split over the products, is a
store x product *affinity* that moves slowly, so it is estimated from a long window and shrunk towards 1:

    twoway(s, p, d) = L(s, d) * P(p, d) / C(d) * A(s, p)
    A(s, p) = (observed units + k) / (independence-expected units + k)  over the window

where the independence expectation is the same ``L * P / C`` computed from the observed (latent) history on the
days the series existed, over the same series the forecast covers. No model is fitted: it is arithmetic on the
forecasts the blend already has, so it runs wherever ``training.forecaster.assemble`` runs (backtest, ``train``'s
registered model, batch, replay, API). New series (fewer than ``min_days`` days in the window) keep LightGBM's own
forecast; a series with no latent sales in its window, or a day LightGBM forecasts 0 (a closed store), gets 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NAME = "twoway"


def affinity(history: pd.DataFrame, ids: list[str], cutoff: pd.Timestamp, window_days: int,
             shrink_units: float) -> pd.DataFrame:
    """Per series of ``ids``: ``obs`` (latent units in the window), ``exp`` (what store total x product share would
    give on the same days), ``days`` (days the series existed in the window) and the shrunk ``affinity``.

    ``history`` needs ``unique_id, store_id, product_id, ds`` and ``y_filled`` (latent demand: censored days
    unconstrained) or ``y``. Store, product and chain totals are over ``ids`` only, as the forecast's are, so the
    two sides of the ratio describe the same population; the prior ``shrink_units`` (pseudo-units on both sides)
    pulls a short or slow series towards 1, i.e. towards plain independence."""
    lo = pd.Timestamp(cutoff) - pd.Timedelta(days=window_days)
    d = history.loc[history["unique_id"].isin(ids) & (history["ds"] > lo) & (history["ds"] <= cutoff)]
    y = d["y_filled"] if "y_filled" in d else d["y"]
    if "y_filled" in d and "y" in d:
        y = y.fillna(d["y"])
    d = d[["unique_id", "store_id", "product_id", "ds"]].assign(_y=np.clip(y.fillna(0.0).to_numpy(float), 0.0, None))
    expected = _independence(d, "_y")
    g = d.assign(_e=expected).groupby("unique_id").agg(obs=("_y", "sum"), exp=("_e", "sum"), days=("ds", "size"))
    g = g.reindex(ids).fillna({"obs": 0.0, "exp": 0.0, "days": 0})
    g["days"] = g["days"].astype(int)
    k = float(shrink_units)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (g["obs"] + k) / (g["exp"] + k)
    g["affinity"] = a.where(np.isfinite(a), 1.0)
    g.index.name = "unique_id"
    return g


def _independence(rows: pd.DataFrame, col: str) -> np.ndarray:
    """Row-wise ``L(s, d) * P(p, d) / C(d)`` of column ``col`` (0 where the chain total is 0)."""
    store = rows.groupby(["store_id", "ds"])[col].transform("sum").to_numpy(float)
    product = rows.groupby(["product_id", "ds"])[col].transform("sum").to_numpy(float)
    chain = rows.groupby("ds")[col].transform("sum").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = store * product / chain
    return np.where(chain > 0, out, 0.0)


def twoway_forecast(lgbm: pd.DataFrame, keys: pd.DataFrame, aff: pd.DataFrame, min_days: int,
                    source: str = "lightgbm") -> pd.DataFrame:
    """``unique_id, ds, twoway`` from LightGBM's forecasts ``lgbm`` (``unique_id, ds, <source>``), the series'
    ``keys`` (index ``unique_id``; ``store_id, product_id``) and ``affinity``'s table.

    Series with fewer than ``min_days`` days in the window (new stores, launches) keep ``source``'s forecast: their
    affinity would be a guess; those with days but no latent sale there get 0 (dead)."""
    f = lgbm[["unique_id", "ds", source]].merge(keys[["store_id", "product_id"]], left_on="unique_id",
                                                 right_index=True, how="inner")
    own = np.clip(f[source].to_numpy(float), 0.0, None)
    f = f.assign(_f=own)
    base = _independence(f, "_f")
    t = aff.reindex(f["unique_id"])
    a = t["affinity"].fillna(1.0).to_numpy(float)
    days = t["days"].fillna(0).to_numpy(int)
    obs = t["obs"].fillna(0.0).to_numpy(float)
    mu = base * a
    mu = np.where(days < min_days, own, mu)  # new series: LightGBM's own forecast
    mu = np.where((days >= min_days) & (obs <= 0), 0.0, mu)  # no latent sale over its window: dead
    mu = np.where(own <= 0, 0.0, mu)  # LightGBM forecasts nothing that day (a closed store)
    return pd.DataFrame({"unique_id": f["unique_id"].to_numpy(), "ds": f["ds"].to_numpy(), NAME: mu})


def twoway_part(history: pd.DataFrame, lgbm: pd.DataFrame | None, ids: list[str], cutoff: pd.Timestamp,
                window_days: int, shrink_units: float, min_days: int) -> pd.DataFrame | None:
    """The candidate for ``ids`` after ``cutoff`` (None without a LightGBM forecast to build it from)."""
    if lgbm is None or "lightgbm" not in lgbm or not len(ids):
        return None
    keys = history.drop_duplicates("unique_id", keep="last").set_index("unique_id")[["store_id", "product_id"]]
    keys = keys.reindex(ids).dropna()
    aff = affinity(history, ids, cutoff, window_days, shrink_units)
    return twoway_forecast(lgbm[lgbm["unique_id"].isin(ids)], keys, aff, min_days)
