"""``DemandForecaster``: the model ``train`` fits and ``promote`` registers (point forecast + NB uncertainty).

Output per store x product x day: the mean, quantiles 0.5/0.8/0.9/0.95/0.99 and the segment's ``alpha``/``shared``
so the replenishment engine can call ``forecasting.uncertainty.window_quantiles`` for multi-day totals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecasting import uncertainty as unc
from forecasting.config import TrainingConfig
from training.blend import Weights, apply_weights, used_models
from training.data import ModelFrame, SegmentRule, segment_series
from training.models import LGBMModel, StatsModels, future_frame, same_weekday_mean

KINDS = ("blend", "lightgbm", "ensemble", "auto_ets")
RULE_NAMES = ("incumbent", "weekday_mean")  # the same-weekday rule, named by whether an incumbent exists
STAT_COMPONENTS = ("auto_ets", "croston", "seasonal_naive")


def kind_weights(kind: str, weights: Weights | None = None) -> Weights:
    """A single-model kind as blend weights (``blend`` needs explicit ones, e.g. the backtest's)."""
    if kind == "blend":
        if not weights:
            raise ValueError("kind 'blend' needs weights (BacktestResult.weights)")
        return weights
    return {"lightgbm": {"all": {"lightgbm": 1.0}}, "auto_ets": {"all": {"auto_ets": 1.0}},
            "ensemble": {"all": {"lightgbm": 0.5, "auto_ets": 0.5}}}[kind]


def components(
    weights: Weights, lgbm: pd.DataFrame | None, stats: pd.DataFrame | None, rule: pd.DataFrame
) -> pd.DataFrame:
    """One frame ``unique_id, ds`` + every component column the weights may name (``ensemble`` included)."""
    out = rule.rename(columns={"incumbent": RULE_NAMES[0]})[["unique_id", "ds", RULE_NAMES[0]]]
    out[RULE_NAMES[1]] = out[RULE_NAMES[0]]
    for part in (lgbm, stats):
        if part is not None:
            out = out.merge(part, on=["unique_id", "ds"], how="left")
    if "lightgbm" in out and "auto_ets" in out:
        out["ensemble"] = 0.5 * (out["lightgbm"] + out["auto_ets"])
    return out


def needs(weights: Weights) -> tuple[bool, bool, bool]:
    """(LightGBM, statistical models, AutoETS) needed by these weights."""
    used = used_models(weights)
    lg = bool(used & {"lightgbm", "ensemble"})
    ets = bool(used & {"auto_ets", "ensemble"})
    return lg, ets or bool(used & set(STAT_COMPONENTS)), ets


def attach_uncertainty(rows: pd.DataFrame, params: dict[str, tuple[float, float]], quantiles: list[float],
                       calibration=None) -> pd.DataFrame:
    """``dispersion`` / ``shared_dispersion`` by segment (``all`` as fallback), the window calibration when the
    model has one (``training.calibration``: means, shared variance, store level), then NB quantiles ``q..``.

    One place for the model's predictive distribution: the pyfunc's ``predict`` and the batch forecast both use it.
    """
    out = rows.copy()
    fallback = params.get("all", (0.3, 0.0))
    p = out["segment"].map(lambda s: params.get(s, fallback))
    out["dispersion"] = [float(a) for a, _ in p]
    out["shared_dispersion"] = [float(min(b, a)) for a, b in p]
    if calibration is not None:
        out = calibration.apply(out)
    for q in quantiles:
        out[f"q{q}"] = unc.nb_quantile(out["mean"].to_numpy(), out["dispersion"].to_numpy(), q)
    return out


class DemandForecaster:
    """Fit on a ModelFrame; ``predict`` forecasts ``h`` days after the last date for every active series.

    ``kind='blend'`` (what ``train`` registers) combines LightGBM, the statsforecast baselines and the weekday
    rule with the backtest's per-segment weights; the single-model kinds remain for callers that want one model.
    """

    def __init__(
        self,
        cfg: TrainingConfig,
        kind: str = "lightgbm",
        params: dict[str, Any] | None = None,
        uncertainty: dict[str, tuple[float, float]] | None = None,
        weights: Weights | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.cfg = cfg
        self.kind = kind
        self.params = dict(params if params is not None else cfg.lgbm)
        self.uncertainty = dict(uncertainty or {"all": (0.3, 0.0)})
        self.weights = kind_weights(kind, weights)
        self.calibration = None  # training.calibration.WindowCalibration, set by `train` from the backtest

    def fit(self, frame: ModelFrame) -> DemandForecaster:
        c = self.cfg
        self.lgbm_ = None
        self.stats_ = None
        use_lgbm, use_stats, use_ets = needs(self.weights)
        if use_lgbm:
            self.lgbm_ = LGBMModel(self.params, c.lags, c.strategy, c.horizon, c.num_threads, c.seed, c.month_lags,
                                   c.month_lag_levels).fit(frame)
        if use_stats:
            self.stats_ = StatsModels(7, c.ets_model, use_ets).fit(frame)
        rule = SegmentRule(
            new_days=c.new_days, slow_mean=c.slow_mean, intermittent_zero_share=c.intermittent_zero_share
        )
        self.segments_ = segment_series(frame.df, rule=rule)
        last = frame.df.groupby("unique_id")["ds"].max()
        self.last_date_ = frame.last_date
        self.ids_ = last.index[last == self.last_date_].tolist()
        # the weekday rule needs the last four weeks; the future frame needs the last day
        recent = frame.df[frame.df["ds"] > self.last_date_ - pd.Timedelta(days=28)]
        self.tail_ = ModelFrame(recent.reset_index(drop=True), frame.static, frame.exog)
        tail = frame.df[frame.df["ds"] == self.last_date_]
        self.keys_ = tail.set_index("unique_id")[["store_id", "product_id"]]
        return self

    def _mean(self, h: int, fut: pd.DataFrame) -> pd.Series:
        lg = self.lgbm_.predict(h, fut, self.ids_) if self.lgbm_ is not None else None
        st = self.stats_.predict(h, self.ids_) if self.stats_ is not None else None
        parts = components(self.weights, lg, st, same_weekday_mean(self.tail_, self.ids_, h))
        parts["segment"] = parts["unique_id"].map(self.segments_).fillna("fast")
        return pd.Series(apply_weights(parts, self.weights), index=pd.MultiIndex.from_frame(parts[["unique_id", "ds"]]))

    def predict(self, h: int | None = None, future: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows ``unique_id, store_id, product_id, ds, horizon, segment, mean, q0.5.., alpha, shared``.

        ``future`` may carry known-in-advance features (``store_id, product_id, ds|date`` + columns); missing
        values are extended from the last observed day.
        """
        h = h or self.cfg.horizon
        src = None
        if future is not None and len(future):
            src = future.copy()
            if "ds" not in src:
                src["ds"] = pd.to_datetime(src["date"])
            src["ds"] = pd.to_datetime(src["ds"])
            if "unique_id" not in src:
                src["unique_id"] = src["store_id"].astype(str) + "_" + src["product_id"].astype(str)
            for col in self.tail_.exog:
                if col not in src:
                    src[col] = np.nan
        fut = future_frame(self.tail_, self.ids_, h, src)
        mean = self._mean(h, fut).rename("mean").reset_index()
        mean = mean.merge(self.keys_, left_on="unique_id", right_index=True)
        mean["horizon"] = (mean["ds"] - self.last_date_).dt.days
        mean["segment"] = mean["unique_id"].map(self.segments_).fillna("fast")
        mean = attach_uncertainty(mean, self.uncertainty, self.cfg.quantiles, getattr(self, "calibration", None))
        mean = mean.rename(columns={"dispersion": "alpha", "shared_dispersion": "shared"})
        cols = ["unique_id", "store_id", "product_id", "ds", "horizon", "segment", "mean",
                *[f"q{q}" for q in self.cfg.quantiles], "alpha", "shared"]
        return mean[cols].sort_values(["unique_id", "ds"], ignore_index=True)

    def feature_importance(self) -> pd.Series | None:
        return self.lgbm_.feature_importance() if self.lgbm_ is not None else None
