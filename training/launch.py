"""Forecasts for products that launch with no sales series yet, cloned from like items of the same store.

Why: a global model forecasts the series it has seen. A product that goes on the menu next week has no series, so
its materials (a new sauce) would get no demand, no order and no stock on launch day, and the product could not sell
at all until someone ordered by hand. Planners clone new items from like items; so does this: the mean forecast of
the same category in the same store, day by day, times ``training.launch.factor``. The rows carry the
``new_product`` segment, whose dispersion is the widest the model fitted. The menu (launch and retire dates,
categories) comes from the feature store's manifest (``features.job.build_manifest``).
"""

from __future__ import annotations

import pandas as pd

from forecasting.config import LaunchConfig
from training.data import ModelFrame

COLUMNS = ["unique_id", "ds", "segment", "mean", "store_id", "product_id"]


def launch_means(frame: ModelFrame, means: pd.DataFrame, h: int, cfg: LaunchConfig) -> pd.DataFrame:
    """Rows ``unique_id, ds, segment, mean, store_id, product_id`` for store x product pairs that have no series in
    ``frame`` and are on the menu in the ``h`` days after it, from ``means`` (the forecast rows of the existing
    series, same columns). Products launched more than ``cfg.grace_days`` before the last day are left out: a store
    that has not sold them by then does not carry them."""
    menu = (frame.manifest or {}).get("products") or []
    if not cfg.enabled or not menu or means.empty:
        return pd.DataFrame(columns=COLUMNS)
    last = pd.Timestamp(frame.last_date)
    end = last + pd.Timedelta(days=h)
    have = set(zip(frame.df["store_id"].astype(int), frame.df["product_id"].astype(int), strict=True))
    category = {int(p["product_id"]): p.get("category") for p in menu}
    m = means.assign(category=means["product_id"].astype(int).map(category))
    like = m.dropna(subset=["category"]).groupby(["store_id", "category", "ds"])["mean"].mean()
    stores = sorted(int(s) for s in means["store_id"].unique())
    carried = set(like.index.droplevel("ds"))
    rows = []
    for p in menu:
        pid, cat = int(p["product_id"]), p.get("category")
        if not p.get("launch_date") or cat is None:
            continue
        launch = pd.Timestamp(p["launch_date"])
        retire = pd.Timestamp(p["retire_date"]) if p.get("retire_date") else None
        if launch > end or launch < last - pd.Timedelta(days=cfg.grace_days) or (retire is not None and retire <= last):
            continue
        for s in stores:
            if (s, pid) in have or (s, cat) not in carried:
                continue
            days = like.loc[(s, cat)]
            days = days[(days.index >= launch) & (days.index <= (retire if retire is not None else end))]
            rows += [(f"{s}_{pid}", ds, "new_product", float(v) * cfg.factor, s, pid) for ds, v in days.items()]
    return pd.DataFrame(rows, columns=COLUMNS)
