"""One future: the known-in-advance inputs of forecast days, from one calendar of planned events.

Why one function: the backtest, the batch forecast (and through its cache the API) and the replay used to build the
future three ways; without a source the last observed day's holiday and campaign flags were held for every future
day, so a model fitted through a holiday forecast two weeks of holidays. Now every caller goes through
``future_frame``: the ``unique_id, ds`` grid from utilsforecast's ``make_future_dataframe`` (what mlforecast's
``MLForecast.make_future_dataframe`` wraps) and each known input computed from ``PlannedCalendar``, which the feature
build writes into the manifest from the source (``features.calendar.planned_events``):

* holidays from the ``holidays`` package for the configured country and subdivision (``features.calendar``);
* campaigns from the coupon templates' validity windows (``features.calendar.campaign_frame``);
* store open/close and product launch/retire dates (``days_since_*`` counters; a closed store or a retired product
  is forecast 0 after its close/retire date, the last day it is on the grid, as ``features.panels`` keeps it).

The same functions compute these columns in the feature store, so a backtest cutoff sees exactly the inputs the
batch forecast would have had on that day (tests: ``tests/test_future_frame.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cached_property

import numpy as np
import pandas as pd
from utilsforecast.processing import make_future_dataframe

from features.calendar import calendar_frame, campaign_frame
from forecasting.inventory.hourly_demand import HourInputs
from training.data import ModelFrame

CALENDAR_COLUMNS = ("dow", "is_weekend", "month_of_year", "day_of_month", "is_holiday")
_EMPTY_CAMPAIGNS = ("product_id", "category", "discount_pct", "valid_from", "valid_to")


def _dates(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="object"), errors="coerce")


@dataclass
class PlannedCalendar:
    """Planned events: holiday country/subdivision, store and product lifetimes, campaign windows."""

    country: str = "US"
    subdiv: str | None = "NY"
    stores: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["store_id", "open_date", "close_date"]))
    products: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["product_id", "category", "launch_date", "retire_date"]))
    campaigns: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(_EMPTY_CAMPAIGNS)))
    temperature: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # forecast degrees C by date

    @classmethod
    def from_manifest(cls, manifest: dict | None) -> PlannedCalendar:
        """The ``calendar`` the feature build stored (older stores: the menu and the build's holiday config)."""
        manifest = manifest or {}
        cal = manifest.get("calendar") or {}
        conf = manifest.get("config") or {}
        hol = cal.get("holidays") or {}
        country = hol.get("country") or conf.get("holiday_country") or "US"
        subdiv = hol.get("subdiv", conf.get("holiday_subdiv", "NY" if country == "US" else None))
        out = cls(country=str(country), subdiv=subdiv)
        stores = pd.DataFrame(cal.get("stores") or [], columns=["store_id", "open_date", "close_date"])
        out.stores = stores.assign(store_id=stores["store_id"].astype("int64"), open_date=_dates(stores["open_date"]),
                                   close_date=_dates(stores["close_date"]))
        prods = pd.DataFrame(manifest.get("products") or [],
                             columns=["product_id", "category", "launch_date", "retire_date"])
        out.products = prods.assign(product_id=prods["product_id"].astype("int64"),
                                    launch_date=_dates(prods["launch_date"]), retire_date=_dates(prods["retire_date"]))
        camp = pd.DataFrame(cal.get("campaigns") or [], columns=list(_EMPTY_CAMPAIGNS))
        out.campaigns = camp.assign(valid_from=_dates(camp["valid_from"]), valid_to=_dates(camp["valid_to"]),
                                    discount_pct=pd.to_numeric(camp["discount_pct"], errors="coerce"))
        temp = pd.DataFrame(cal.get("temperature") or [], columns=["date", "temp_forecast_c"])
        out.temperature = pd.Series(pd.to_numeric(temp["temp_forecast_c"], errors="coerce").to_numpy(float),
                                    index=pd.DatetimeIndex(_dates(temp["date"])))
        return out

    def hour_inputs(self, as_of: date) -> HourInputs:
        """The hour-level model's day covariates (``forecasting.inventory.hourly_demand.HourInputs``) as known on
        ``as_of``: the temperature forecasts (the normal fitted on those up to ``as_of``) and the campaign days of
        every product from the same windows the daily features use. The one place the backtest, the API, the bake
        plan and the benchmark get them from."""
        camp, cats = self._campaign_days
        return HourInputs(self.temperature, camp, cats, as_of)

    @cached_property
    def _campaign_days(self) -> tuple[pd.DataFrame | None, dict[int, str]]:
        """Every product's campaign days and each product's category: the same for every ``as_of`` (the intraday
        replay asks for each day), so built once."""
        camp = None
        c = self.campaigns.dropna(subset=["valid_from", "valid_to"])
        if len(c) and len(self.products):
            camp = campaign_frame(c, self.products[["product_id", "category"]], c["valid_from"].min().date(),
                                  c["valid_to"].max().date())[["product_id", "date"]]
        cats = {int(p): c for p, c in zip(self.products["product_id"], self.products["category"], strict=True)
                if isinstance(c, str) and c}
        return camp, cats

    def known(self, rows: pd.DataFrame, columns: list[str], frame: ModelFrame | None = None) -> pd.DataFrame:
        """``columns`` for ``rows`` (``unique_id, ds, store_id, product_id``), computed from the planned events.

        A counter whose start date the calendar lacks (a hand-made frame) continues from ``frame``'s last value:
        a counter is a date difference, so that is exact, not a held flag. Columns the calendar cannot know are NaN.
        """
        out = pd.DataFrame(index=rows.index)
        if not columns or rows.empty:
            return out.assign(**{c: np.nan for c in columns})
        ds = pd.to_datetime(rows["ds"])
        d0, d1 = ds.min().date(), ds.max().date()
        if any(c in CALENDAR_COLUMNS for c in columns):
            cal = calendar_frame(d0, d1, self.country, self.subdiv).set_index("date")
            for c in CALENDAR_COLUMNS:
                if c in columns:
                    out[c] = ds.map(cal[c]).to_numpy(float)
        starts = {"days_since_store_open": ("store_id", self.stores.set_index("store_id")["open_date"]),
                  "days_since_launch": ("product_id", self.products.set_index("product_id")["launch_date"])}
        for c, (key, known) in starts.items():
            if c not in columns:
                continue
            start = rows[key].astype("int64").map(known.dropna()) if len(known) else pd.Series(pd.NaT, index=rows.index)
            if frame is not None and c in frame.df and start.isna().any():
                last = frame.df.sort_values("ds").groupby("unique_id")[["ds", c]].last()
                inferred = last["ds"] - pd.to_timedelta(last[c], unit="D")
                start = start.fillna(rows["unique_id"].map(inferred))
            out[c] = (ds - pd.to_datetime(start)).dt.days.astype(float)
        if "campaign" in columns or "campaign_discount_pct" in columns:
            camp = campaign_frame(self.campaigns, self.products[["product_id", "category"]], d0, d1)
            pct = pd.Series(camp["campaign_discount_pct"].to_numpy(float),
                            index=pd.MultiIndex.from_arrays([camp["product_id"].astype("int64"), camp["date"]]))
            key = pd.MultiIndex.from_arrays([rows["product_id"].astype("int64").to_numpy(), ds.to_numpy()])
            hit = pct.reindex(key).to_numpy()
            if "campaign" in columns:
                out["campaign"] = np.isfinite(hit).astype(float)
            if "campaign_discount_pct" in columns:
                out["campaign_discount_pct"] = np.nan_to_num(hit, nan=0.0)
        for c in columns:
            if c not in out:
                out[c] = np.nan
        return out[list(columns)]

    def off_menu(self, rows: pd.DataFrame) -> np.ndarray:
        """True where the store is closed (after ``close_date``) or the product retired (after ``retire_date``)."""
        ds = pd.to_datetime(rows["ds"]).to_numpy()
        close = rows["store_id"].astype("int64").map(self.stores.set_index("store_id")["close_date"].dropna())
        retire = rows["product_id"].astype("int64").map(self.products.set_index("product_id")["retire_date"].dropna())
        off = np.zeros(len(rows), dtype=bool)
        for d in (close, retire):
            v = pd.to_datetime(d).to_numpy()
            off |= ~np.isnat(v) & (ds > v)
        return off


def calendar_of(frame: ModelFrame) -> PlannedCalendar:
    """The frame's planned calendar (from its manifest; cheap: a few hundred rows)."""
    return PlannedCalendar.from_manifest(frame.manifest)


def future_frame(frame: ModelFrame, ids: list[str], h: int, calendar: PlannedCalendar | None = None) -> pd.DataFrame:
    """``unique_id, ds, store_id, product_id`` + the model's exogenous columns for the ``h`` days after each series'
    last date in ``frame``: the one builder of future inputs (backtest, batch forecast, replay)."""
    calendar = calendar or calendar_of(frame)
    last = frame.df.groupby("unique_id", observed=True)["ds"].max().loc[ids]
    fut = make_future_dataframe(uids=pd.Index(last.index), last_times=pd.DatetimeIndex(last.to_numpy()),
                                freq=pd.offsets.Day(), h=h, id_col="unique_id", time_col="ds")
    keys = frame.df.drop_duplicates("unique_id").set_index("unique_id")[["store_id", "product_id"]]
    fut = fut.merge(keys, left_on="unique_id", right_index=True, how="left")
    if frame.exog:
        fut = pd.concat([fut, calendar.known(fut, list(frame.exog), frame)], axis=1)
    return fut.reset_index(drop=True)
