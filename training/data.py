"""The thin adapter between the feature store and model input, plus segments and censoring.

Model input is one long frame: ``unique_id, ds, y, censored, store_id, product_id`` + static + known exogenous.
Everything the models learn from passes through ``to_model_frame`` so a change of feature-store column names is a
one-function change.

Censoring (stock-outs): a censored day's sales are a lower bound on demand. Those rows are *kept* with an imputed
target ``max(sales, mean of the same weekday over the last 4 uncensored weeks)`` so lags and rolling statistics stay
defined, but they get training weight 0 (never a target) and are scored apart in backtests.
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
_RESERVED = {"store_id", "product_id", "date", "qty", "censored", "true_mean", "unique_id", "ds", "y", "weight"}
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
        raise DataError(f"no feature store at {d} (expected {d / 'daily'}): run `replenish features` first")
    daily = pd.read_parquet(path)
    manifest_path = d / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    return daily, manifest


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


def to_model_frame(daily: pd.DataFrame, manifest: dict | None = None) -> ModelFrame:
    """Feature-store ``daily`` -> ModelFrame (series before their first sale are trimmed; censoring imputed)."""
    manifest = manifest or {}
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
    df["y_filled"] = impute_censored(df)
    cols = ["unique_id", "ds", "y", "y_filled", "censored", *static, *exog]
    if "true_mean" in df:
        cols.append("true_mean")
    return ModelFrame(df[cols].reset_index(drop=True), static, exog, manifest)


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
