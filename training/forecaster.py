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
from training.data import ModelFrame, SegmentRule, segment_series
from training.models import LGBMModel, StatsModels, future_frame

KINDS = ("lightgbm", "ensemble", "auto_ets")


class DemandForecaster:
    """Fit on a ModelFrame; ``predict`` forecasts ``h`` days after the last date for every active series."""

    def __init__(
        self,
        cfg: TrainingConfig,
        kind: str = "lightgbm",
        params: dict[str, Any] | None = None,
        uncertainty: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        self.cfg = cfg
        self.kind = kind
        self.params = dict(params if params is not None else cfg.lgbm)
        self.uncertainty = dict(uncertainty or {"all": (0.3, 0.0)})

    def fit(self, frame: ModelFrame) -> DemandForecaster:
        c = self.cfg
        self.lgbm_ = None
        self.stats_ = None
        if self.kind in ("lightgbm", "ensemble"):
            self.lgbm_ = LGBMModel(self.params, c.lags, c.strategy, c.horizon, c.num_threads, c.seed).fit(frame)
        if self.kind in ("ensemble", "auto_ets"):
            self.stats_ = StatsModels(7, c.ets_model, True).fit(frame)
        rule = SegmentRule(
            new_days=c.new_days, slow_mean=c.slow_mean, intermittent_zero_share=c.intermittent_zero_share
        )
        self.segments_ = segment_series(frame.df, rule=rule)
        last = frame.df.groupby("unique_id")["ds"].max()
        self.last_date_ = frame.last_date
        self.ids_ = last.index[last == self.last_date_].tolist()
        tail = frame.df[frame.df["ds"] == self.last_date_]
        self.tail_ = ModelFrame(tail.reset_index(drop=True), frame.static, frame.exog)
        self.keys_ = tail.set_index("unique_id")[["store_id", "product_id"]]
        return self

    def _mean(self, h: int, fut: pd.DataFrame) -> pd.Series:
        parts = []
        if self.lgbm_ is not None:
            parts.append(self.lgbm_.predict(h, fut, self.ids_).set_index(["unique_id", "ds"])["lightgbm"])
        if self.stats_ is not None:
            parts.append(self.stats_.predict(h, self.ids_).set_index(["unique_id", "ds"])["auto_ets"])
        return pd.concat(parts, axis=1).mean(axis=1)

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
        p = mean["segment"].map(lambda s: self.uncertainty.get(s, self.uncertainty["all"]))
        mean["alpha"] = [a for a, _ in p]
        mean["shared"] = [b for _, b in p]
        for q in self.cfg.quantiles:
            mean[f"q{q}"] = unc.nb_quantile(mean["mean"].to_numpy(), mean["alpha"].to_numpy(), q)
        cols = ["unique_id", "store_id", "product_id", "ds", "horizon", "segment", "mean",
                *[f"q{q}" for q in self.cfg.quantiles], "alpha", "shared"]
        return mean[cols].sort_values(["unique_id", "ds"], ignore_index=True)

    def feature_importance(self) -> pd.Series | None:
        return self.lgbm_.feature_importance() if self.lgbm_ is not None else None
