"""The thin adapter between the feature store and model input, plus segments and censoring.

Model input is one long frame: ``unique_id, ds, y, censored, store_id, product_id`` + static + known exogenous.
Everything the models learn from passes through ``to_model_frame`` so a change of feature-store column names is a
one-function change.

Censoring (stock-outs): a censored day's sales are a lower bound on demand, and dropping those days is not neutral:
the days that stock out are the high-demand days, so the days left over understate the level (ready food, censored on
a quarter of its days, sells 12% below its latent demand on the uncensored ones). So censored days are
*unconstrained* where the stockout time is known: latent demand = sales / the share of the day's demand (store x
weekday hourly profile) that falls before the stockout, when that share is at least ``UnconstrainRule.min_share``;
those rows get the training weight ``UnconstrainRule.weight`` (column ``weight``). Days out of stock too early (or
without a stockout time) keep the old imputation ``max(sales, mean of the same weekday over the last 4 weeks)`` and
weight 0. Backtests still score every censored day apart, against the observed sales.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.errors import DataError

ID_COLS = ("store_id", "product_id")
_RESERVED = {"store_id", "product_id", "date", "qty", "censored", "true_mean", "unique_id", "ds", "y", "weight",
             "stockout_hours", "share_before"}
# Used only when the manifest has no registry: names that are calendar/plan facts, hence known in advance.
_KNOWN_PATTERN = re.compile(r"(day_of_week|dow|weekday|holiday|days_since|campaign|coupon|month|is_weekend|open)")
# Static attributes the feature store may carry per product or store (used when present and constant per series).
_STATIC_CANDIDATES = ("category", "is_drink", "is_iced", "list_price", "district")


@dataclass
class ModelFrame:
    """Model input and the column roles the models need."""

    df: pd.DataFrame
    static: list[str] = field(default_factory=list)
    exog: list[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def last_date(self) -> pd.Timestamp:
        return pd.Timestamp(self.df["ds"].max())

    def until(self, cutoff: pd.Timestamp) -> ModelFrame:
        return ModelFrame(self.df[self.df["ds"] <= cutoff], self.static, self.exog, self.manifest)


def load_feature_store(directory: str | Path) -> tuple[pd.DataFrame, dict]:
    """The ``daily`` dataset and ``manifest.json`` (empty dict when absent) of a feature store directory."""
    d = Path(directory)
    path = d / "daily"
    if not path.exists() and (d / "daily.parquet").exists():
        path = d / "daily.parquet"
    if not path.exists():
        raise DataError(f"no feature store at {d} (expected {d / 'daily'}): run `replenish features build` first")
    daily = pd.read_parquet(path)
    manifest_path = d / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    hourly = d / "hourly"
    if "stockout_hours" in daily and "censored" in daily and hourly.exists() and daily["censored"].any():
        profile = hourly_profiles_before(pd.read_parquet(hourly, columns=["store_id", "date", "local_hour", "qty"]))
        daily["share_before"] = share_before_stockout(daily, profile)
    return daily, manifest


def hourly_profile(hourly: pd.DataFrame) -> pd.DataFrame:
    """Share of a store's daily demand per local hour, by store x weekday (index store_id, dow; columns 0..23).

    Why store x weekday over the whole history: the intraday shape is a stable store attribute (commute peaks),
    and one profile per store and weekday has thousands of units behind it where a product's own would be noise.
    """
    h = hourly.assign(dow=pd.to_datetime(hourly["date"]).dt.dayofweek)
    prof = h.groupby(["store_id", "dow", "local_hour"])["qty"].sum().unstack(fill_value=0.0)
    prof = prof.reindex(columns=range(24), fill_value=0.0).astype(float)
    tot = prof.sum(axis=1)
    return prof[tot > 0].div(tot[tot > 0], axis=0)


def hourly_profiles_before(hourly: pd.DataFrame) -> pd.DataFrame:
    """``hourly_profile`` for each month from the hourly sales of the months *before* it only (index ``month,
    store_id, dow``): unconstraining a censored day never reads that day's or later hours, so a backtest cutoff
    inside the history sees no profile built from its own future. The first month has none (its censored days
    fall back to the imputation)."""
    h = hourly.assign(dow=pd.to_datetime(hourly["date"]).dt.dayofweek,
                      month=pd.to_datetime(hourly["date"]).dt.to_period("M"))
    m = h.groupby(["month", "store_id", "dow", "local_hour"])["qty"].sum().unstack(fill_value=0.0)
    m = m.reindex(columns=range(24), fill_value=0.0).astype(float)
    months = sorted(m.index.get_level_values("month").unique())
    parts, acc = [], None
    for mon in months:
        if acc is not None:
            tot = acc.sum(axis=1)
            prof = acc[tot > 0].div(tot[tot > 0], axis=0)
            parts.append(pd.concat({mon: prof}, names=["month"]))
        cur = m.xs(mon, level="month")
        acc = cur if acc is None else acc.add(cur, fill_value=0.0)
    if not parts:
        return pd.DataFrame(columns=range(24), index=pd.MultiIndex.from_arrays([[], [], []],
                                                                                names=["month", "store_id", "dow"]))
    return pd.concat(parts)


def share_before_stockout(daily: pd.DataFrame, profile: pd.DataFrame) -> pd.Series:
    """Share of the day's demand that falls before the stockout, for censored rows with ``stockout_hours`` > 0.

    ``stockout_hours`` are the last open hours of the day out of stock (fractional: linear within an hour); the
    open hours are the profile's non-zero hours. ``profile``: by ``store_id, dow`` or by ``month, store_id, dow``
    (``hourly_profiles_before``). NaN where unknown (not censored, no stockout time, no profile).
    """
    out = pd.Series(np.nan, index=daily.index, dtype=float)
    rows = daily["censored"].fillna(False).astype(bool) & (daily["stockout_hours"].fillna(0) > 0)
    if not rows.any() or profile.empty:
        return out
    sub = daily.loc[rows]
    dates = pd.to_datetime(sub["date"])
    arrays = [sub["store_id"].to_numpy(), dates.dt.dayofweek.to_numpy()]
    if profile.index.nlevels == 3:  # by month, from earlier months only (hourly_profiles_before)
        arrays.insert(0, dates.dt.to_period("M").to_numpy())
    key = pd.MultiIndex.from_arrays(arrays)
    prof = profile.reindex(key).to_numpy()  # (k, 24), NaN rows where the store x weekday has no profile
    known = ~np.isnan(prof).any(axis=1)
    rev = np.zeros_like(prof)
    for i in np.nonzero(known)[0]:  # open hours from the close backwards
        open_h = prof[i][prof[i] > 0][::-1]
        rev[i, : len(open_h)] = open_h
    cum = np.concatenate([np.zeros((len(rev), 1)), np.cumsum(rev, axis=1)], axis=1)  # share of the last j hours
    hrs = np.clip(sub["stockout_hours"].to_numpy(float), 0.0, 24.0)
    whole = np.floor(hrs).astype(int)
    frac = hrs - whole
    idx = np.arange(len(rev))
    after = cum[idx, whole] + frac * rev[idx, np.minimum(whole, 23)]
    out.loc[sub.index] = np.where(known, np.clip(1.0 - after, 0.0, 1.0), np.nan)
    return out


def known_in_advance(manifest: dict, columns: list[str]) -> list[str]:
    """Columns the registry marks known in advance; tolerant of a list or a mapping registry."""
    reg = None
    for key in ("features", "registry", "feature_registry"):
        if isinstance(manifest.get(key), (dict, list)):
            reg = manifest[key]
            break
    if isinstance(reg, dict) and "daily" in reg and isinstance(reg["daily"], (dict, list)):
        reg = reg["daily"]
    known: set[str] = set()
    if isinstance(reg, dict):
        for name, info in reg.items():
            flag = info.get("known_in_advance", info.get("known")) if isinstance(info, dict) else bool(info)
            if flag:
                known.add(name)
    elif isinstance(reg, list):
        for item in reg:
            if isinstance(item, dict) and (item.get("known_in_advance") or item.get("known")):
                known.add(item.get("name") or item.get("feature"))
    else:
        known = {c for c in columns if _KNOWN_PATTERN.search(c)}
    return [c for c in columns if c in known and c not in _RESERVED]


@dataclass(frozen=True)
class UnconstrainRule:
    """Censored days whose stockout came late enough are trained on as sales / share before the stockout.

    ``min_share``: below this share of the day's demand sold before the stockout the estimate is too uncertain (a
    day out by 9 am would multiply the morning's sales by 10): impute and weight 0 instead. ``weight``: training
    weight of an unconstrained day (1 = as an observed day). Mirrors ``training.censored_min_share`` /
    ``training.censored_weight`` in configs/.
    """

    min_share: float = 0.3
    weight: float = 1.0


def to_model_frame(daily: pd.DataFrame, manifest: dict | None = None,
                   unconstrain: UnconstrainRule | None = None) -> ModelFrame:
    """Feature-store ``daily`` -> ModelFrame (series before their first sale are trimmed; censoring unconstrained
    or imputed; ``weight`` is the training weight of each row)."""
    manifest = manifest or {}
    rule = unconstrain or UnconstrainRule()
    missing = {"store_id", "product_id", "date", "qty"} - set(daily.columns)
    if missing:
        raise DataError(f"feature store 'daily' lacks columns {sorted(missing)}")
    df = daily.copy()
    df["ds"] = pd.to_datetime(df["date"]).dt.tz_localize(None).dt.normalize()
    df["y"] = pd.to_numeric(df["qty"], errors="coerce").astype(float)
    df["censored"] = df["censored"].fillna(False).astype(bool) if "censored" in df else False
    df["unique_id"] = df["store_id"].astype(str) + "_" + df["product_id"].astype(str)
    df = df.sort_values(["unique_id", "ds"], kind="stable")
    if df.duplicated(["unique_id", "ds"]).any():
        raise DataError("feature store 'daily' has duplicate store x product x date rows")
    started = df.groupby("unique_id", sort=False)["y"].transform(lambda s: (s.fillna(0) > 0).cumsum()) > 0
    df = df[started]
    if df.empty:
        raise DataError("feature store 'daily' has no sales")
    df["y"] = df["y"].fillna(0.0)

    numeric = [c for c in df.columns if c not in _RESERVED and pd.api.types.is_numeric_dtype(df[c])]
    exog = [c for c in known_in_advance(manifest, numeric) if c not in _STATIC_CANDIDATES]
    static = ["store_id", "product_id"]
    for c in _STATIC_CANDIDATES:
        if c in df and df.groupby("unique_id")[c].nunique(dropna=False).max() <= 1:
            if not pd.api.types.is_numeric_dtype(df[c]):
                df[c] = df[c].astype("category").cat.codes
            static.append(c)
    for c in exog:
        df[c] = df[c].astype(float)
    share = df["share_before"] if "share_before" in df else pd.Series(np.nan, index=df.index)
    df["y_filled"], df["weight"] = unconstrain_censored(df, share, rule)
    cols = ["unique_id", "ds", "y", "y_filled", "censored", "weight", *static, *exog]
    if "true_mean" in df:
        cols.append("true_mean")
    return ModelFrame(df[cols].reset_index(drop=True), static, exog, manifest)


def unconstrain_censored(df: pd.DataFrame, share: pd.Series, rule: UnconstrainRule) -> tuple[pd.Series, pd.Series]:
    """(target, training weight): sales / ``share`` on censored days with ``share`` >= ``rule.min_share``
    (weight ``rule.weight``), the weekday imputation elsewhere on censored days (weight 0), sales otherwise (1)."""
    cens = df["censored"].to_numpy(bool)
    sh = share.reindex(df.index).to_numpy(float)
    ok = cens & np.isfinite(sh) & (sh >= rule.min_share) & (rule.min_share > 0)
    y = df["y"].to_numpy(float)
    latent = pd.Series(np.where(ok, y / np.where(ok, sh, 1.0), y), index=df.index)
    weight = pd.Series(np.where(cens, np.where(ok, rule.weight, 0.0), 1.0), index=df.index)
    if not (cens & ~ok).any():
        return latent, weight
    rest = df.assign(y=latent, censored=cens & ~ok)
    return impute_censored(rest), weight


def impute_censored(df: pd.DataFrame, weeks: int = 4) -> pd.Series:
    """Censored days -> max(sales, same-weekday mean of the previous ``weeks`` uncensored weeks)."""
    if not df["censored"].any():
        return df["y"].copy()
    clean = df["y"].where(~df["censored"])
    dow = df["ds"].dt.dayofweek
    est = clean.groupby([df["unique_id"], dow]).transform(
        lambda s: s.rolling(weeks, min_periods=1).mean().shift(1)
    )
    return df["y"].where(~df["censored"], np.fmax(df["y"], est.fillna(df["y"])))


@dataclass(frozen=True)
class SegmentRule:
    """Thresholds that sort series into the segments reported by backtests and used for dispersion."""

    recent_days: int = 56
    new_days: int = 56
    slow_mean: float = 5.0
    intermittent_zero_share: float = 0.3


SEGMENTS = ("new_store", "new_product", "intermittent", "slow", "fast")


def segment_series(df: pd.DataFrame, cutoff: pd.Timestamp | None = None, rule: SegmentRule | None = None) -> pd.Series:
    """unique_id -> segment, from history up to ``cutoff`` only (so backtests never peek).

    Priority new_store > new_product > intermittent > slow > fast; "new" is measured from the first sale of the
    store (any product) or of the product (any store), which needs no calendar or catalog assumption.
    """
    rule = rule or SegmentRule()
    h = df if cutoff is None else df[df["ds"] <= cutoff]
    cutoff = pd.Timestamp(h["ds"].max())
    store_first = h.groupby("store_id")["ds"].min()
    product_first = h.groupby("product_id")["ds"].min()
    recent = h[h["ds"] > cutoff - pd.Timedelta(days=rule.recent_days)]
    stats = recent.groupby("unique_id").agg(mean=("y_filled", "mean"), zero=("y", lambda s: float((s == 0).mean())))
    ids = h.groupby("unique_id")[["store_id", "product_id"]].first()
    stats = ids.join(stats, how="left").fillna({"mean": 0.0, "zero": 1.0})
    limit = cutoff - pd.Timedelta(days=rule.new_days)
    seg = np.where(
        stats["store_id"].map(store_first) > limit,
        "new_store",
        np.where(
            stats["product_id"].map(product_first) > limit,
            "new_product",
            np.where(
                stats["zero"] > rule.intermittent_zero_share,
                "intermittent",
                np.where(stats["mean"] < rule.slow_mean, "slow", "fast"),
            ),
        ),
    )
    return pd.Series(seg, index=stats.index, name="segment")
