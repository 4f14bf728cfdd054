"""Exogenous daily features: calendar, holidays, store and product age, campaigns, weather shocks.

Why separate: these depend only on dates and small dimension tables, never on sales, so they are computed for
the zero-filled grid and joined by key. Which of them a model may use at forecast time is in ``registry.py``.
"""

from __future__ import annotations

from datetime import date

import holidays
import numpy as np
import pandas as pd


def calendar_frame(d0: date, d1: date, country: str = "US", subdiv: str | None = "NY") -> pd.DataFrame:
    """One row per date: day of week, weekend, month, day of month, public holiday (country + subdivision)."""
    dates = pd.date_range(pd.Timestamp(d0), pd.Timestamp(d1), freq="D")
    years = sorted(set(dates.year))
    hol = holidays.country_holidays(country, subdiv=subdiv, years=years)
    names = [hol.get(d.date()) for d in dates]
    return pd.DataFrame({
        "date": dates.to_numpy(dtype="datetime64[ns]"),
        "dow": dates.dayofweek.to_numpy().astype("int8"),
        "is_weekend": dates.dayofweek.to_numpy() >= 5,
        "month_of_year": dates.month.to_numpy().astype("int8"),
        "day_of_month": dates.day.to_numpy().astype("int8"),
        "is_holiday": np.array([n is not None for n in names]),
        "holiday_name": pd.Categorical(names),
    })


def campaign_frame(campaigns: pd.DataFrame, products: pd.DataFrame, d0: date, d1: date) -> pd.DataFrame:
    """(product_id, date, campaign_discount_pct) for days a campaign coupon covers the product or its category."""
    cols = ["product_id", "date", "campaign_discount_pct"]
    if campaigns.empty:
        return pd.DataFrame(columns=cols).astype({"product_id": "int32", "date": "datetime64[ns]",
                                                  "campaign_discount_pct": "float32"})
    lo, hi = pd.Timestamp(d0), pd.Timestamp(d1)
    c = campaigns[(campaigns["valid_to"] >= lo) & (campaigns["valid_from"] <= hi)]
    by_product = c[c["product_id"].notna()].astype({"product_id": "int32"})
    by_cat = c[c["product_id"].isna() & c["category"].notna()].drop(columns="product_id").merge(
        products[["product_id", "category"]], on="category")
    parts = []
    for row in pd.concat([by_product[["product_id", "discount_pct", "valid_from", "valid_to"]],
                          by_cat[["product_id", "discount_pct", "valid_from", "valid_to"]]]).itertuples(index=False):
        days = pd.date_range(max(row.valid_from, lo), min(row.valid_to, hi), freq="D")
        parts.append(pd.DataFrame({"product_id": np.int32(row.product_id), "date": days.to_numpy("datetime64[ns]"),
                                   "campaign_discount_pct": float(row.discount_pct)}))
    if not parts:
        return campaign_frame(campaigns.iloc[0:0], products, d0, d1)
    out = pd.concat(parts, ignore_index=True).groupby(["product_id", "date"], sort=False)[
        "campaign_discount_pct"].max().reset_index()
    return out.astype({"product_id": "int32", "campaign_discount_pct": "float32"})


def add_daily_features(daily: pd.DataFrame, stores: pd.DataFrame, products: pd.DataFrame,
                       campaigns: pd.DataFrame, weather: pd.DataFrame, d0: date, d1: date,
                       country: str, subdiv: str | None) -> pd.DataFrame:
    """Join calendar, age, campaign and weather features onto a daily panel (keys unchanged, order kept)."""
    out = daily.merge(calendar_frame(d0, d1, country, subdiv), on="date", how="left")
    opened = out["store_id"].map(stores.set_index("store_id")["open_date"])
    out["days_since_store_open"] = ((out["date"] - opened).dt.days).astype("int32")
    launched = out["product_id"].map(products.set_index("product_id")["launch_date"])
    out["days_since_launch"] = ((out["date"] - launched).dt.days).astype("float32")
    camp = campaign_frame(campaigns, products, d0, d1)
    out = out.merge(camp, on=["product_id", "date"], how="left")
    out["campaign"] = out["campaign_discount_pct"].notna()
    out["campaign_discount_pct"] = out["campaign_discount_pct"].fillna(0).astype("float32")
    w = weather.drop_duplicates("date")
    out = out.merge(w, on="date", how="left")
    out["weather_shock"] = out["weather_kind"].notna()
    out["weather_kind"] = pd.Categorical(out["weather_kind"])
    return out


def planned_events(stores: pd.DataFrame, campaigns: pd.DataFrame, country: str, subdiv: str | None,
                   temperature: pd.DataFrame | None = None) -> dict:
    """The planned-event calendar the manifest carries (``training.future.PlannedCalendar`` reads it back).

    Why in the manifest: future days have no feature rows, and the forecast must see the same holidays, campaign
    windows and store lifetimes the feature rows were built from (products and their dates are the manifest's menu).
    ``temperature`` (date, temp_forecast_c: the daily forecast, for the hour-level model's tilts) is stored only when
    the source has it, so a store built from a source without it is unchanged.
    """
    def day(v) -> str | None:
        return None if pd.isna(v) else pd.Timestamp(v).date().isoformat()

    out = {
        "holidays": {"country": country, "subdiv": subdiv},
        "stores": [{"store_id": int(r.store_id), "open_date": day(r.open_date), "close_date": day(r.close_date)}
                   for r in stores.itertuples(index=False)],
        "campaigns": [{"product_id": None if pd.isna(r.product_id) else int(r.product_id),
                       "category": None if pd.isna(r.category) else str(r.category),
                       "discount_pct": float(r.discount_pct), "valid_from": day(r.valid_from),
                       "valid_to": day(r.valid_to)}
                      for r in campaigns.itertuples(index=False)],
    }
    if temperature is not None and len(temperature):
        t = temperature.dropna(subset=["temp_forecast_c"]).sort_values("date")
        out["temperature"] = [{"date": day(r.date), "temp_forecast_c": round(float(r.temp_forecast_c), 2)}
                              for r in t.itertuples(index=False)]
    return out
