"""Point models with one small interface: ``fit(frame)`` then ``predict(h, future)`` -> ``unique_id, ds, <name>``.

* ``LGBMModel``: one global LightGBM (tweedie) through mlforecast: lags, rolling and seasonal-rolling means,
  day-of-week, static store/product ids (categorical) and known-in-advance exogenous features only; recursive, or
  direct (one model per horizon) when ``strategy='direct'``. Censored days have weight 0 (see training.data).
* ``StatsModels``: statsforecast SeasonalNaive(7), AutoETS(7) and CrostonOptimized, on series long enough for them;
  shorter series fall back to the incumbent rule so every model forecasts every series.
* ``SameWeekdayMean``: the incumbent's rule (mean of the same weekday over the last 4 weeks) at product level.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from training.data import ModelFrame

DEFAULT_LGBM: dict[str, Any] = {
    "objective": "tweedie",
    "tweedie_variance_power": 1.2,
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
}
STAT_NAMES = ("seasonal_naive", "auto_ets", "croston")


def future_frame(frame: ModelFrame, ids: list[str], h: int, source: pd.DataFrame | None = None) -> pd.DataFrame:
    """``unique_id, ds`` (+ exogenous) for the ``h`` days after each series' last date.

    Known-in-advance values come from ``source`` (e.g. the full panel in a backtest, or a future-features frame);
    when absent they are extended from the last row (calendar counters advance, flags hold) so prediction still runs.
    """
    last = frame.df.groupby("unique_id")["ds"].max().loc[ids]
    steps = np.arange(1, h + 1)
    fut = pd.DataFrame(
        {
            "unique_id": np.repeat(last.index.to_numpy(), h),
            "ds": np.repeat(last.to_numpy(), h) + np.tile(steps, len(last)) * pd.Timedelta(days=1),
        }
    )
    if not frame.exog:
        return fut
    if source is not None:
        fut = fut.merge(source[["unique_id", "ds", *frame.exog]], on=["unique_id", "ds"], how="left")
    else:
        fut = fut.assign(**{c: np.nan for c in frame.exog})
    lastrow = frame.df.sort_values("ds").groupby("unique_id")[frame.exog].last()
    for c in frame.exog:
        fill = fut["unique_id"].map(lastrow[c])
        if c.startswith("days_since"):
            fill = fill + np.tile(steps, len(last))
        elif c in ("day_of_week", "dow", "weekday"):
            fill = fut["ds"].dt.dayofweek.astype(float)
        elif c == "is_weekend":
            fill = (fut["ds"].dt.dayofweek >= 5).astype(float)
        elif c in ("day_of_month", "month_of_year"):
            fill = (fut["ds"].dt.day if c == "day_of_month" else fut["ds"].dt.month).astype(float)
        fut[c] = fut[c].fillna(fill).astype(float)
    return fut


class LGBMModel:
    """Global LightGBM over all store x product series (M5-style tweedie objective)."""

    name = "lightgbm"

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        lags: list[int] | None = None,
        strategy: str = "recursive",
        horizon: int = 14,
        num_threads: int = 2,
        seed: int = 42,
    ) -> None:
        self.params = {**DEFAULT_LGBM, **(params or {})}
        self.lags = list(lags or [1, 2, 3, 4, 5, 6, 7, 14, 21, 28])
        self.strategy = strategy
        self.horizon = horizon
        self.num_threads = num_threads
        self.seed = seed

    def _pipeline(self):
        import lightgbm as lgb
        from mlforecast import MLForecast
        from mlforecast.lag_transforms import ExponentiallyWeightedMean, RollingMean, RollingStd, SeasonalRollingMean

        reg = lgb.LGBMRegressor(
            **self.params, random_state=self.seed, n_jobs=self.num_threads, verbosity=-1, deterministic=True
        )
        return MLForecast(
            models={self.name: reg},
            freq="D",
            lags=self.lags,
            lag_transforms={
                1: [RollingMean(7), RollingMean(28), RollingStd(28), ExponentiallyWeightedMean(alpha=0.3)],
                7: [SeasonalRollingMean(season_length=7, window_size=4), RollingMean(28)],
            },
            date_features=["dayofweek", "day"],
            num_threads=1,
        )

    def fit(self, frame: ModelFrame) -> LGBMModel:
        d = frame.df
        self.static_ = list(frame.static)
        self.exog_ = list(frame.exog)
        train = pd.DataFrame(
            {
                "unique_id": d["unique_id"],
                "ds": d["ds"],
                "y": d["y_filled"],
                "weight": np.where(d["censored"], 0.0, 1.0),
            }
        )
        for c in [*self.static_, *self.exog_]:
            train[c] = d[c].to_numpy()
        self.mlf_ = self._pipeline()
        cats = [c for c in ("store_id", "product_id") if c in self.static_]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.mlf_.fit(
                train,
                static_features=self.static_,
                weight_col="weight",
                max_horizon=self.horizon if self.strategy == "direct" else None,
                models_fit_kwargs={self.name: {"categorical_feature": cats}},
                validate_data=False,
            )
        return self

    def predict(self, h: int, future: pd.DataFrame | None = None, ids: list[str] | None = None) -> pd.DataFrame:
        x_df = None
        if self.exog_:
            if future is None:
                raise ValueError("future exogenous values are required")
            x_df = future[["unique_id", "ds", *self.exog_]]
            if ids is not None:
                x_df = x_df[x_df["unique_id"].isin(ids)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = self.mlf_.predict(h=h, X_df=x_df, ids=ids)
        out[self.name] = out[self.name].clip(lower=0.0)
        return out[["unique_id", "ds", self.name]]

    def feature_importance(self) -> pd.Series:
        """Gain importance (averaged over horizons for the direct strategy)."""
        models = self.mlf_.models_[self.name]
        models = models if isinstance(models, list) else [models]
        imp = [pd.Series(m.booster_.feature_importance("gain"), index=m.booster_.feature_name()) for m in models]
        return pd.concat(imp, axis=1).mean(axis=1).sort_values(ascending=False)


def same_weekday_mean(frame: ModelFrame, ids: list[str], h: int, weeks: int = 4) -> pd.DataFrame:
    """The incumbent's rule: for each target day, the mean sales of the same weekday over the last ``weeks`` weeks.

    Uses observed sales as they are (the incumbent does not correct stock-outs). Missing days are skipped; a series
    with none of them gets the mean of what it has.
    """
    d = frame.df[frame.df["unique_id"].isin(ids)]
    last = d.groupby("unique_id")["ds"].max()
    span = 7 * weeks
    rel = (d["ds"] - d["unique_id"].map(last)).dt.days + span - 1  # 0..span-1 over the window
    keep = rel >= 0
    wide = np.full((len(ids), span), np.nan)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    wide[pos[d.loc[keep, "unique_id"]].to_numpy(), rel[keep].to_numpy().astype(int)] = d.loc[keep, "y"].to_numpy()
    fallback = np.nan_to_num(np.nanmean(np.where(np.isnan(wide).all(1, keepdims=True), 0.0, wide), axis=1))
    out = []
    for k in range(1, h + 1):
        back = [(7 - k % 7) % 7 + 7 * i for i in range(weeks)]  # days before the last date with the same weekday
        cols = [span - 1 - b for b in back if b < span]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = np.nanmean(wide[:, cols], axis=1)
        v = np.where(np.isnan(v), fallback, v)
        out.append(pd.DataFrame({"unique_id": ids, "ds": last.loc[ids].to_numpy() + pd.Timedelta(days=k), "v": v}))
    res = pd.concat(out, ignore_index=True).rename(columns={"v": "incumbent"})
    return res.sort_values(["unique_id", "ds"], ignore_index=True)


class StatsModels:
    """statsforecast baselines; ``use_ets=False`` skips AutoETS when it does not fit the time budget."""

    def __init__(self, season_length: int = 7, ets_model: str = "ZNA", use_ets: bool = True, n_jobs: int = 1) -> None:
        self.season_length = season_length
        self.ets_model = ets_model
        self.use_ets = use_ets
        self.n_jobs = n_jobs

    @property
    def names(self) -> list[str]:
        return [n for n in STAT_NAMES if self.use_ets or n != "auto_ets"]

    def fit(self, frame: ModelFrame) -> StatsModels:
        from statsforecast import StatsForecast
        from statsforecast.models import AutoETS, CrostonOptimized, SeasonalNaive

        self.frame_ = frame
        d = frame.df[["unique_id", "ds", "y_filled"]].rename(columns={"y_filled": "y"})
        n = d.groupby("unique_id").size()
        self.long_ = n.index[n >= 2 * self.season_length].tolist()
        models = [SeasonalNaive(self.season_length, alias="seasonal_naive")]
        if self.use_ets:
            models.append(AutoETS(season_length=self.season_length, model=self.ets_model, alias="auto_ets"))
        models.append(CrostonOptimized(alias="croston"))
        self.sf_ = StatsForecast(models=models, freq="D", n_jobs=self.n_jobs)
        if self.long_:
            self.sf_.fit(d[d["unique_id"].isin(self.long_)])
        return self

    def predict(self, h: int, ids: list[str]) -> pd.DataFrame:
        rule = same_weekday_mean(self.frame_, ids, h)
        out = rule[["unique_id", "ds"]].copy()
        if self.long_:
            pred = self.sf_.predict(h=h)
            out = out.merge(pred, on=["unique_id", "ds"], how="left")
        for n in self.names:
            if n not in out:
                out[n] = np.nan
            out[n] = out[n].fillna(rule["incumbent"]).clip(lower=0.0)
        return out[["unique_id", "ds", *self.names]]
