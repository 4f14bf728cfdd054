"""Forecasts for products that launch with no sales series yet, cloned from like items of the same store.

Why: a global model forecasts the series it has seen. A product that goes on the menu next week has no series, so
its materials (a new sauce) would get no demand, no order and no stock on launch day, and the product could not sell
at all until someone ordered by hand. Planners clone new items from like items; so does this: the mean forecast of
the same category in the same store, day by day, times ``training.launch.factor``. The rows carry the
``new_product`` segment, whose dispersion is the widest the model fitted. The menu (launch and retire dates,
categories) comes from the feature store's manifest (``features.job.build_manifest``).

A store that opens inside the horizon (or opened up to ``grace_days`` ago) has the same problem for every product:
no series until it has sold, so nothing would be ordered for it beyond the opening orders (measured on the replay:
the tenth store had 232 stockout hours in its first 7 days against the incumbent's 159). ``new_store_means`` gives
each product the store lacks a series for its mean over the established open stores, day by day, times
``training.launch.store_factor`` (a new store ramps up), from the open date, in the ``new_store`` segment. Open
dates come from the planned calendar the feature store keeps (``training.future.PlannedCalendar``).
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
    have |= set(zip(means["store_id"].astype(int), means["product_id"].astype(int), strict=True))  # new-store rows
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


def new_store_means(frame: ModelFrame, means: pd.DataFrame, h: int, cfg: LaunchConfig) -> pd.DataFrame:
    """Rows ``unique_id, ds, segment, mean, store_id, product_id`` for stores that open in the ``h`` days after
    ``frame`` or opened up to ``cfg.grace_days`` before its last day, for each product of ``means`` the store has no
    series for: the product's forecast summed over the established stores open that day / their number (stores
    that do not carry it count as zero), times ``cfg.store_factor``, from the open date (zero before it, none after
    a planned close). Existing series are left as they are."""
    from training.future import calendar_of

    if not cfg.enabled or cfg.store_factor <= 0 or means.empty:
        return pd.DataFrame(columns=COLUMNS)
    stores = calendar_of(frame).stores.dropna(subset=["open_date"])
    if stores.empty:
        return pd.DataFrame(columns=COLUMNS)
    last = pd.Timestamp(frame.last_date)
    end = last + pd.Timedelta(days=h)
    new = stores[(stores["open_date"] <= end) & (stores["open_date"] >= last - pd.Timedelta(days=cfg.grace_days))
                 & (stores["close_date"].isna() | (stores["close_date"] > last))]
    if new.empty:
        return pd.DataFrame(columns=COLUMNS)
    new_ids = set(new["store_id"].astype(int))
    base = means[~means["store_id"].astype(int).isin(new_ids)]
    if base.empty:
        return pd.DataFrame(columns=COLUMNS)
    n_open = base.groupby("ds")["store_id"].nunique()
    tot = base.groupby(["product_id", "ds"])["mean"].sum()
    avg = tot / n_open.reindex(tot.index.get_level_values("ds")).to_numpy()
    have = set(zip(frame.df["store_id"].astype(int), frame.df["product_id"].astype(int), strict=True))
    products = sorted(int(p) for p in avg.index.get_level_values("product_id").unique())
    rows = []
    for r in new.itertuples(index=False):
        s = int(r.store_id)
        first = max(pd.Timestamp(r.open_date), last + pd.Timedelta(days=1))
        stop = min(end, pd.Timestamp(r.close_date)) if pd.notna(r.close_date) else end
        for pid in products:
            if (s, pid) in have:
                continue
            days = avg.loc[pid]
            days = days[(days.index >= first) & (days.index <= stop)]
            rows += [(f"{s}_{pid}", ds, "new_store", float(v) * cfg.store_factor, s, pid) for ds, v in days.items()]
    return pd.DataFrame(rows, columns=COLUMNS)
