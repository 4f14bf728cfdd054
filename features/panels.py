"""Panels in store-local time: UTC-hour aggregates -> hourly / daily / material panels, zero-filled where open.

Why in pandas: the aggregate is small (store x product x UTC hour), so converting it per store zone is cheap and
exact. DST is handled by the conversion itself: on the fall-back day two UTC hours land on local 1am and are
summed; on the spring-forward day local 2am never appears, and the zero-fill grid is built from real instants so
it never invents it. Zero-fill happens only inside opening hours, store open..close dates and product
launch..retire dates; observed sales are never dropped by the grid (the union is kept).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

HOURLY_KEYS = ["store_id", "product_id", "date", "local_hour"]
DAILY_KEYS = ["store_id", "product_id", "date"]


def open_hours(open_hour: int, close_hour: int) -> list[int]:
    """Local hours a store serves: open_hour inclusive .. close_hour exclusive (wraps past midnight)."""
    if close_hour > open_hour:
        return list(range(open_hour, min(close_hour, 24)))
    return list(range(open_hour, 24)) + list(range(0, close_hour))


def localize_hours(utc_hour: pd.Series, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Local date (datetime64[ns] midnight) and hour for integer UTC hours; converts each distinct hour once."""
    codes, uniques = pd.factorize(utc_hour, sort=False)
    ts = pd.to_datetime(np.asarray(uniques, dtype="int64") * 3600, unit="s", utc=True).tz_convert(tz)
    naive = ts.tz_localize(None)
    dates = naive.normalize().to_numpy(dtype="datetime64[ns]")
    hours = naive.hour.to_numpy().astype("int8")
    return dates[codes], hours[codes]


def to_local(agg: pd.DataFrame, stores: pd.DataFrame) -> pd.DataFrame:
    """Add local ``date`` and ``local_hour`` to a UTC-hour aggregate, per store zone (rows keep utc_hour)."""
    out = agg.copy()
    out["date"] = np.datetime64("NaT", "ns")
    out["local_hour"] = np.int8(0)
    zone = out["store_id"].map(stores.set_index("store_id")["timezone"])
    for tz, idx in out.groupby(zone, sort=False).groups.items():
        d, h = localize_hours(out.loc[idx, "utc_hour"], str(tz))
        out.loc[idx, "date"] = d
        out.loc[idx, "local_hour"] = h
    out["local_hour"] = out["local_hour"].astype("int8")
    return out


def outside_opening(local: pd.DataFrame, stores: pd.DataFrame) -> pd.Series:
    """Boolean mask of rows sold in a local hour the store is closed."""
    allowed = pd.DataFrame(
        [(int(s), h) for s, o, c in stores[["store_id", "open_hour", "close_hour"]].itertuples(index=False)
         for h in open_hours(int(o), int(c))], columns=["store_id", "local_hour"]).astype(
        {"store_id": "int32", "local_hour": "int8"})
    allowed["_ok"] = True
    m = local[["store_id", "local_hour"]].merge(allowed, how="left", on=["store_id", "local_hour"])
    return pd.Series(m["_ok"].isna().to_numpy(), index=local.index)


def collapse_local(local: pd.DataFrame) -> pd.DataFrame:
    """Sum UTC hours that map to the same local key (the repeated 1am on the fall-back day)."""
    return local.groupby(HOURLY_KEYS, sort=False, observed=True)["qty"].sum().reset_index()


def local_hour_grid(tz: str, d0: date, d1: date) -> pd.DataFrame:
    """Every (date, local_hour) that exists in ``tz`` for dates d0..d1 (23 hours on spring-forward days)."""
    start = pd.Timestamp(d0).tz_localize(tz)
    end = pd.Timestamp(d1 + pd.Timedelta(days=1)).tz_localize(tz)
    inst = pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="h", inclusive="left")
    local = inst.tz_convert(tz).tz_localize(None)
    g = pd.DataFrame({"date": local.normalize().to_numpy(dtype="datetime64[ns]"),
                      "local_hour": local.hour.to_numpy().astype("int8")})
    return g.drop_duplicates(ignore_index=True)


def store_hour_grid(stores: pd.DataFrame, d0: date, d1: date) -> pd.DataFrame:
    """(store_id, date, local_hour) a store is open: opening hours, open_date .. close_date (both inclusive)."""
    parts = []
    for tz, grp in stores.groupby("timezone", sort=False):
        base = local_hour_grid(str(tz), d0, d1)
        for s in grp.itertuples(index=False):
            g = base[base["local_hour"].isin(open_hours(int(s.open_hour), int(s.close_hour)))]
            keep = g["date"] >= s.open_date
            if not pd.isna(s.close_date):
                keep &= g["date"] <= s.close_date
            g = g[keep]
            parts.append(pd.DataFrame({"store_id": np.int32(s.store_id), "date": g["date"].to_numpy(),
                                       "local_hour": g["local_hour"].to_numpy()}))
    if not parts:
        return pd.DataFrame({"store_id": pd.Series(dtype="int32"), "date": pd.Series(dtype="datetime64[ns]"),
                             "local_hour": pd.Series(dtype="int8")})
    return pd.concat(parts, ignore_index=True)


def product_days(products: pd.DataFrame, d0: date, d1: date) -> pd.DataFrame:
    """(product_id, date) a product is on the menu: launch_date .. retire_date, both inclusive (as the generator)."""
    dates = pd.date_range(pd.Timestamp(d0), pd.Timestamp(d1), freq="D").to_numpy(dtype="datetime64[ns]")
    n, m = len(products), len(dates)
    g = pd.DataFrame({"product_id": np.repeat(products["product_id"].to_numpy("int32"), m),
                      "date": np.tile(dates, n)})
    launch = np.repeat(products["launch_date"].to_numpy("datetime64[ns]"), m)
    retire = np.repeat(products["retire_date"].to_numpy("datetime64[ns]"), m)
    keep = (np.isnat(launch) | (g["date"].to_numpy() >= launch)) & (np.isnat(retire) | (g["date"].to_numpy() <= retire))
    return g[keep].reset_index(drop=True)


def hourly_panel(observed: pd.DataFrame, stores: pd.DataFrame, products: pd.DataFrame, d0: date, d1: date
                 ) -> pd.DataFrame:
    """Zero-filled hourly panel for local dates d0..d1: grid of open hours x active products, plus observed keys."""
    grid = store_hour_grid(stores, d0, d1).merge(product_days(products, d0, d1), on="date")
    obs = observed[HOURLY_KEYS + ["qty"]]
    panel = grid.merge(obs, how="outer", on=HOURLY_KEYS)
    panel["qty"] = panel["qty"].fillna(0).astype("int32")
    panel = panel.astype({"store_id": "int32", "product_id": "int32", "local_hour": "int8"})
    return panel.sort_values(HOURLY_KEYS, ignore_index=True)[HOURLY_KEYS + ["qty"]]


def daily_from_hourly(hourly: pd.DataFrame) -> pd.DataFrame:
    """Daily units = the sum of the day's hours (so daily and hourly always agree)."""
    d = hourly.groupby(DAILY_KEYS, sort=True, observed=True)["qty"].sum().reset_index()
    d["qty"] = d["qty"].astype("int32")
    return d


def material_panel(daily: pd.DataFrame, bom: pd.DataFrame) -> pd.DataFrame:
    """Material units per store x day: sum over products of units x qty_per_unit; censored if any product was."""
    m = daily[DAILY_KEYS + ["qty", "censored"]].merge(bom, on="product_id")
    m["mqty"] = m["qty"].to_numpy("float64") * m["qty_per_unit"].to_numpy("float64")
    out = (m.groupby(["store_id", "material_id", "date"], sort=True, observed=True)
           .agg(qty=("mqty", "sum"), censored=("censored", "any")).reset_index())
    return out.astype({"store_id": "int32", "material_id": "int32", "qty": "float64", "censored": "bool"})
