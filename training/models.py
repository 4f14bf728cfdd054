"""Point models with one small interface: ``fit(frame)`` then ``predict(h, future)`` -> ``unique_id, ds, <name>``.

* ``LGBMModel``: one global LightGBM (tweedie) through mlforecast: lags, rolling and seasonal-rolling means,
  day-of-week, static store/product ids (categorical) and known-in-advance exogenous features only; recursive,
  direct (one model per horizon, ``strategy='direct'``) or their mean (``'both'``). Censored days have weight 0.
  Optional month lags (``month_lag_features``): the same calendar day 1..k months back.
* ``StatsModels``: statsforecast SeasonalNaive(7), AutoETS(7) and CrostonOptimized, on series long enough for them;
  shorter series fall back to the incumbent rule so every model forecasts every series.
* ``SameWeekdayMean``: the incumbent's rule (mean of the same weekday over the last 4 weeks) at product level.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from forecasting.config import CleansingConfig
from forecasting.errors import ConfigError
from training.cleansing import cleanse, day_factors
from training.data import ModelFrame
from training.future import future_frame  # noqa: F401  (the one future builder; imported from here by callers)

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


CALENDAR = ("dayofweek", "day")  # what the recursive strategy passes to mlforecast as date_features


def calendar_columns(ds: pd.Series) -> dict[str, np.ndarray]:
    """Target-date calendar as exogenous columns (``cal_dayofweek``, ``cal_day``) for the direct strategy.

    Why not mlforecast ``date_features`` there: in mlforecast 1.1 the direct models are trained with the date
    features of the row the lags are taken at (the origin's next day) but predicted with the *target* date's, so
    every horizon model but the first saw one weekday in training and another at prediction (a Saturday peak came
    out as a trough, see tests). Dynamic exogenous columns are shifted to the target date in both phases.
    """
    d = pd.DatetimeIndex(ds)
    return {"cal_dayofweek": d.dayofweek.to_numpy(float), "cal_day": d.day.to_numpy(float)}


DIRECT_MAX_HORIZON = 7  # strategy "auto": direct up to this horizon (h LightGBM fits), recursive beyond


def resolve_strategy(strategy: str, horizon: int) -> str:
    """``auto`` -> ``direct`` for short horizons, else ``recursive``.

    Evidence (benchmarks/bench_models.py --strategies, bench_maven.py): direct beat recursive on both data sets
    (Maven h=7: WAPE 0.335 vs 0.349; generated history h=14: 0.413 vs 0.423), but costs one fit per horizon day:
    at h=14 that is 6.6x the LightGBM time, which breaks the 5-minute train + backtest budget.
    """
    if strategy == "auto":
        return "direct" if horizon <= DIRECT_MAX_HORIZON else "recursive"
    return strategy


MONTH_LAG_INFO_DAYS = 28  # month-lag features of day t read sales up to t - 28 days only: known for horizons <= 28
MONTH_LAG_LEVELS = ("series", "store", "product")


def month_lag_features(
    hist: pd.DataFrame, rows: pd.DataFrame, lags: list[int], levels: tuple[str, ...] | list[str] = MONTH_LAG_LEVELS
) -> pd.DataFrame:
    """Same calendar day ``k`` months earlier, as a ratio to that month's mean, for each row's ``ds``.

    Why: some sales logs repeat a day-of-month profile (paydays, month-end dips; on the Maven log the ratio of a
    day to its month correlates 0.65 with the same day a month before, 0.87 for the store total), which a weekly
    lag set never sees. A ratio (not the raw count) keeps the feature level-free, so a growing series is not out
    of the trees' range. ``levels``: the series itself, its store's total and its product's total over stores (far
    less noisy). Leak-free by construction: the value for day ``t`` uses sales up to ``t - MONTH_LAG_INFO_DAYS``
    only (the month mean is taken over the days of that month up to then; fewer than 7 days -> NaN).

    ``hist``: ``unique_id, ds, y, store_id, product_id``; ``rows``: ``unique_id, ds`` (+ ids). Returns one column
    per level and lag (``ml{k}_{level}``) plus their mean over lags (``ml_{level}``), aligned with ``rows``.
    """
    keys = {"series": "unique_id", "store": "store_id", "product": "product_id"}
    ids = hist[["unique_id", "store_id", "product_id"]].drop_duplicates("unique_id").set_index("unique_id")
    out = pd.DataFrame(index=rows.index)
    t = pd.to_datetime(rows["ds"])
    cap = t - pd.Timedelta(days=MONTH_LAG_INFO_DAYS)
    for level in levels:
        key = keys[level]
        a = hist.groupby([key, "ds"], as_index=False, sort=True)["y"].sum() if key != "unique_id" else (
            hist[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"]))
        mon = a["ds"].dt.to_period("M")
        g = a.groupby([a[key], mon], sort=False)["y"]
        a = a.assign(csum=g.cumsum(), cnt=g.cumcount() + 1)
        idx = pd.MultiIndex.from_frame(a[[key, "ds"]])
        y_at = pd.Series(a["y"].to_numpy(), index=idx)
        cs = pd.Series(a["csum"].to_numpy(), index=idx)
        cn = pd.Series(a["cnt"].to_numpy(), index=idx)
        k_ids = rows["unique_id"].map(ids[key]) if key != "unique_id" else rows["unique_id"]
        cols = []
        for k in lags:
            day = t - pd.DateOffset(months=k)
            last = (day + pd.offsets.MonthEnd(0)).where(day + pd.offsets.MonthEnd(0) <= cap, cap)
            ok = last >= day.dt.to_period("M").dt.start_time
            at = pd.MultiIndex.from_arrays([k_ids.to_numpy(), day.to_numpy()])
            upto = pd.MultiIndex.from_arrays([k_ids.to_numpy(), last.to_numpy()])
            n = cn.reindex(upto).to_numpy()
            mean = cs.reindex(upto).to_numpy() / n
            val = y_at.reindex(at).to_numpy() / np.where(mean > 0, mean, np.nan)
            val[~ok.to_numpy() | ~(n >= 7)] = np.nan
            name = f"ml{k}_{level}"
            out[name] = val
            cols.append(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[f"ml_{level}"] = np.nanmean(out[cols].to_numpy(), axis=1) if cols else np.nan
    return out


ID_CODES = ("store_id", "product_id")  # static ids LightGBM gets as dense categorical codes (LGBMModel._encode)
MISSING = 1e9  # direct strategy: what a missing exogenous value becomes (e.g. days_since_launch of an old product)


class LGBMModel:
    """Global LightGBM over all store x product series (M5-style tweedie objective).

    ``strategy``: ``recursive`` (one model, its own forecasts fed back as lags), ``direct`` (one model per horizon
    day, mlforecast ``max_horizon``) or ``both`` (the mean of the two, as in the M5 winner). Direct models weigh a
    training row by its origin day's censoring flag, not the target day's (mlforecast has one weight per row).

    Direct models get the target-date calendar as exogenous columns and missing exogenous values replaced by
    ``MISSING``: mlforecast drops every training row of horizon 2+ whose shifted exogenous value is missing, and
    ``days_since_launch`` is missing for every product without a launch date (97% of rows in the generated history,
    all of Maven), which left those models trained on new products only (WAPE 0.75 vs 0.42 recursive).
    """

    name = "lightgbm"

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        lags: list[int] | None = None,
        strategy: str = "recursive",
        horizon: int = 14,
        num_threads: int = 1,
        seed: int = 42,
        month_lags: list[int] | None = None,
        month_lag_levels: tuple[str, ...] | list[str] = MONTH_LAG_LEVELS,
        name: str = "lightgbm",
        cleansing: CleansingConfig | None = None,
    ) -> None:
        self.name = name  # the output column (``lightgbm_month``: the month-lag candidate of the blend)
        self.cleansing = cleansing  # demand-history cleansing (training.cleansing); None: the raw history
        if strategy not in ("auto", "recursive", "direct", "both"):
            raise ValueError("strategy must be auto, recursive, direct or both")
        if month_lags and horizon > MONTH_LAG_INFO_DAYS:
            raise ConfigError(f"training.month_lags are known only {MONTH_LAG_INFO_DAYS} days ahead: horizon "
                              f"{horizon} is longer")
        self.month_lags = [int(k) for k in (month_lags or [])]
        self.month_lag_levels = tuple(month_lag_levels)
        self.params = {**DEFAULT_LGBM, **(params or {})}
        self.lags = list(lags or [1, 2, 3, 4, 5, 6, 7, 14, 21, 28])
        self.strategy = resolve_strategy(strategy, horizon)
        self.horizon = horizon
        self.num_threads = num_threads
        self.seed = seed

    def _pipeline(self, direct: bool = False):
        """The mlforecast definition; ``direct`` drops date_features (see ``calendar_columns``)."""
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
            date_features=[] if direct else list(CALENDAR),
            num_threads=1,
        )

    @property
    def history_days(self) -> int:
        """Days of history the fitted trees need to be applied (``new_df``): month lags reach back k months to the
        start of that month; 0 without month lags (the lag features need far less than any caller hands over)."""
        return 31 * (max(self.month_lags) + 1) + 28 if getattr(self, "month_lags", None) else 0

    @property
    def feature_span(self) -> int:
        """Days of history the longest lag feature looks back (RollingMean(28) at lag 7)."""
        return max([*self.lags, 35])

    def _kinds_for(self, days: int) -> list[str]:
        """Parts to fit; a direct part needs ``feature_span + horizon + 14`` days (two weeks of usable rows for its
        last horizon), else the recursive model stands in for it."""
        kinds = ["recursive", "direct"] if self.strategy == "both" else [self.strategy]
        if days < self.feature_span + self.horizon + 14:
            kinds = ["recursive"]
        return kinds

    def fit(self, frame: ModelFrame) -> LGBMModel:
        d = frame.df
        self.static_ = list(frame.static)
        self.exog_ = list(frame.exog)
        train = pd.DataFrame(
            {
                "unique_id": d["unique_id"],
                "ds": d["ds"],
                "y": d["y_filled"],
                # the frame's training weight (training.data: unconstrained censored days -> censored_weight,
                # imputed ones 0); a frame without it trains on uncensored days only
                "weight": d["weight"].to_numpy(float) if "weight" in d else np.where(d["censored"], 0.0, 1.0),
            }
        )
        for c in [*self.static_, *self.exog_]:
            train[c] = d[c].to_numpy()
        self.cleanse_thresholds_: dict | None = None
        if getattr(self, "cleansing", None) is not None:
            train, facts = self._cleansed(train)
            self.cleanse_thresholds_ = facts.attrs["thresholds"]  # reused on newer history (batch, API)
        self.codes_ = {c: pd.Index(pd.unique(train[c].dropna())).sort_values() for c in ID_CODES if c in self.static_}
        train = self._encode(train)
        self.derived_: list[str] = []
        self.hist_: pd.DataFrame | None = None
        if self.month_lags:
            hist = self._history(train)
            feats = month_lag_features(hist, train, self.month_lags, self.month_lag_levels)
            self.derived_ = list(feats.columns)
            train = pd.concat([train, feats.fillna(MISSING)], axis=1)
            keep = hist["ds"] > hist["ds"].max() - pd.Timedelta(days=self.history_days)
            self.hist_ = hist[keep].reset_index(drop=True)
        cats = [c for c in ("store_id", "product_id") if c in self.static_]
        self.mlfs_: dict[str, Any] = {}
        kinds = self._kinds_for((d["ds"].max() - d["ds"].min()).days + 1)
        for kind in kinds:
            direct = kind == "direct"
            mlf = self._pipeline(direct)
            data = self._direct(train) if direct else train
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                mlf.fit(
                    data,
                    static_features=self.static_,
                    weight_col="weight",
                    max_horizon=self.horizon if direct else None,
                    models_fit_kwargs={self.name: {"categorical_feature": cats}},
                    validate_data=False,
                )
            self.mlfs_[kind] = mlf
        self.mlf_ = self.mlfs_[kinds[0]]
        return self

    def _cleansed(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``df`` (raw ids) with ``y`` cleansed of abnormal store-days, and the day factors found."""
        keys = self._history(df)
        if "is_holiday" in df:
            keys["is_holiday"] = df["is_holiday"].to_numpy(float)
        facts = day_factors(keys, self.cleansing, thresholds=getattr(self, "cleanse_thresholds_", None))
        return df.assign(y=cleanse(keys, facts, self.cleansing)), facts

    def _encode(self, df: pd.DataFrame) -> pd.DataFrame:
        """Store and product ids as dense integer codes 0..n-1 (unknown ids -> -1, LightGBM's missing category).

        Why: LightGBM sizes a categorical feature by its largest value, so ids hashed from text keys (up to 2^31)
        exhausted memory (22 GB on a 94-series log); codes keep it bounded by the data, whatever the source's keys.
        """
        codes = getattr(self, "codes_", {})
        if not codes:
            return df
        df = df.copy()
        for c, idx in codes.items():
            if c in df:
                df[c] = idx.get_indexer(df[c]).astype("int32")
        return df

    @staticmethod
    def _history(df: pd.DataFrame) -> pd.DataFrame:
        """``unique_id, ds, y, store_id, product_id`` (ids from the columns, else parsed from ``unique_id``)."""
        h = df[["unique_id", "ds", "y"]].copy()
        for i, c in enumerate(("store_id", "product_id")):
            h[c] = df[c].to_numpy() if c in df else df["unique_id"].astype(str).str.split("_").str[i]
        return h

    def _with_derived(self, x_df: pd.DataFrame, hist: pd.DataFrame | None) -> pd.DataFrame:
        """``x_df`` plus the month-lag columns computed from ``hist`` (the newest history the trees are applied to)."""
        derived = getattr(self, "derived_", [])
        if not derived:
            return x_df
        if hist is None:
            raise ValueError("month-lag features need the series history")
        x_df = x_df.reset_index(drop=True)
        feats = month_lag_features(hist, x_df, self.month_lags, self.month_lag_levels)[derived].fillna(MISSING)
        return pd.concat([x_df.drop(columns=[c for c in derived if c in x_df]), feats], axis=1)

    @property
    def _dynamic(self) -> list[str]:
        return [*self.exog_, *getattr(self, "derived_", [])]

    def _direct(self, df: pd.DataFrame) -> pd.DataFrame:
        """Calendar columns added and missing exogenous values filled (see the class docstring)."""
        out = df.assign(**calendar_columns(df["ds"]))
        dyn = [c for c in self._dynamic if c in out]
        if dyn:
            out[dyn] = out[dyn].fillna(MISSING)
        return out

    def _x(self, kind: str, x_df: pd.DataFrame | None) -> pd.DataFrame | None:
        if kind != "direct":
            return None if x_df is None or not self._dynamic else x_df[["unique_id", "ds", *self._dynamic]]
        return self._direct(x_df[["unique_id", "ds", *self._dynamic]])

    def predict(
        self,
        h: int,
        future: pd.DataFrame | None = None,
        ids: list[str] | None = None,
        new_df: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """``unique_id, ds, lightgbm`` for ``h`` days; ``new_df`` applies the fitted trees to newer history.

        ``future`` holds ``unique_id, ds`` (+ the exogenous columns) for the forecast days; needed when the model
        has exogenous features or a direct part.
        """
        if future is None and (self._dynamic or "direct" in self.mlfs_):
            raise ValueError("future rows (unique_id, ds and exogenous values) are required")
        x_df = future
        if x_df is not None and ids is not None:
            x_df = x_df[x_df["unique_id"].isin(ids)]
        if new_df is not None and getattr(self, "cleansing", None) is not None:
            new_df = self._cleansed(new_df.reset_index(drop=True))[0]
        if getattr(self, "derived_", []) and x_df is not None:
            if new_df is not None:
                new_df = new_df.reset_index(drop=True)
                hist = self._history(new_df)
                feats = month_lag_features(hist, new_df, self.month_lags, self.month_lag_levels)[self.derived_]
                new_df = pd.concat([new_df, feats.fillna(MISSING)], axis=1)
            else:
                hist = self.hist_
            x_df = self._with_derived(x_df, hist)
        if new_df is not None:
            new_df = self._encode(new_df)
        outs = []
        for kind, mlf in self.mlfs_.items():
            kw: dict[str, Any] = {"h": h, "X_df": self._x(kind, x_df)}
            if new_df is not None:
                kw["new_df"] = self._direct(new_df) if kind == "direct" else new_df
            else:
                kw["ids"] = ids
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                out = mlf.predict(**kw)
            outs.append(out.set_index(["unique_id", "ds"])[self.name].clip(lower=0.0))
        mean = pd.concat(outs, axis=1).mean(axis=1).rename(self.name).reset_index()
        return mean[["unique_id", "ds", self.name]]

    def feature_importance(self) -> pd.Series:
        """Gain importance (averaged over horizons for the direct strategy and over both parts for ``both``)."""
        imp = []
        for mlf in self.mlfs_.values():
            models = mlf.models_[self.name]
            if isinstance(models, dict):  # mlforecast's direct strategy: one model per horizon
                models = list(models.values())
            models = models if isinstance(models, list) else [models]
            imp += [pd.Series(m.booster_.feature_importance("gain"), index=m.booster_.feature_name()) for m in models]
        return pd.concat(imp, axis=1).mean(axis=1).fillna(0.0).sort_values(ascending=False)


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
