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
from training.cleansing import rule_from
from training.data import ModelFrame, SegmentRule, segment_series
from training.models import MONTH_LAG_INFO_DAYS, LGBMModel, StatsModels, future_frame, same_weekday_mean
from training.twoway import twoway_part

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
    weights: Weights | None, lgbm: pd.DataFrame | None, stats: pd.DataFrame | None, rule: pd.DataFrame,
    window: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One frame ``unique_id, ds`` + every component column the weights may name (``ensemble`` included)."""
    out = rule.rename(columns={"incumbent": RULE_NAMES[0]})[["unique_id", "ds", RULE_NAMES[0]]]
    out[RULE_NAMES[1]] = out[RULE_NAMES[0]]
    for part in (lgbm, stats, window):
        if part is not None:
            out = out.merge(part, on=["unique_id", "ds"], how="left")
    if "lightgbm" in out and "auto_ets" in out:
        out["ensemble"] = 0.5 * (out["lightgbm"] + out["auto_ets"])
    return out


def window_mean(frame: ModelFrame, ids: list[str], h: int, days: int = 28) -> pd.DataFrame:
    """``unique_id, ds, window_mean``: units over the last ``days`` days / those days (the robust rule for sparse
    series). Days before a series' first sale count as zero once its store was selling, so one sale of 21 units is
    21 / 28 a day, not 21 a day (Croston on a one-sale series); a new store divides by its own days only."""
    d = frame.df
    last = frame.last_date
    recent = d[d["unique_id"].isin(ids) & (d["ds"] > last - pd.Timedelta(days=days))]
    tot = recent.groupby("unique_id")["y_filled"].sum().reindex(ids, fill_value=0.0)
    store_first = d.groupby("store_id")["ds"].min()
    store = d.drop_duplicates("unique_id").set_index("unique_id")["store_id"].reindex(ids)
    span = np.minimum(days, (last - store.map(store_first)).dt.days.to_numpy() + 1).clip(min=1)
    rate = tot.to_numpy() / span
    fut = pd.DataFrame({"unique_id": np.repeat(np.asarray(ids, dtype=object), h),
                        "ds": np.tile(last + pd.to_timedelta(np.arange(1, h + 1), unit="D"), len(ids)),
                        "window_mean": np.repeat(rate, h)})
    return fut


def sparse_series(df: pd.DataFrame, min_sale_days: int) -> pd.Index:
    """Series with fewer than ``min_sale_days`` days with a sale: too little history for any model's pattern."""
    sold = df.loc[df["y"] > 0].groupby("unique_id").size()
    ids = df["unique_id"].unique()
    return pd.Index(ids[sold.reindex(ids, fill_value=0).to_numpy() < min_sale_days])


def active_series(df: pd.DataFrame, cutoff: pd.Timestamp, dead_days: int) -> list[str]:
    """Series with a row on ``cutoff`` and a sale within the last ``dead_days`` days (dead items are neither
    forecast nor scored: ``training.dead_days``)."""
    last = df.groupby("unique_id")["ds"].max()
    on = last.index[last == cutoff]
    sold = df.loc[(df["y"] > 0) & df["unique_id"].isin(on)].groupby("unique_id")["ds"].max()
    alive = sold.index[sold > cutoff - pd.Timedelta(days=dead_days)]
    return [u for u in on if u in set(alive)]


def assemble(frame: ModelFrame, ids: list[str], h: int, cfg: TrainingConfig, lgbm: pd.DataFrame | None,
             stats: pd.DataFrame | None) -> pd.DataFrame:
    """Every component forecast of ``ids`` for the ``h`` days after ``frame``, with the columns ``final_mean``
    needs (segment, sparse and off-menu flags, keys): the one place the backtest, ``DemandForecaster.predict``, the
    batch forecast and the replay put a forecast together."""
    from training.future import calendar_of

    parts = components(None, lgbm, stats, same_weekday_mean(frame, ids, h),
                       window_mean(frame, ids, h, cfg.sparse.window_days))
    tw = cfg.twoway
    if tw.enabled:
        part = twoway_part(frame.df, lgbm, ids, frame.last_date, tw.window_days, tw.shrink_units, tw.min_days)
        if part is not None:
            parts = parts.merge(part, on=["unique_id", "ds"], how="left")
    rule = SegmentRule(new_days=cfg.new_days, slow_mean=cfg.slow_mean,
                       intermittent_zero_share=cfg.intermittent_zero_share)
    parts["segment"] = parts["unique_id"].map(segment_series(frame.df, rule=rule)).fillna("fast")
    parts["sparse"] = parts["unique_id"].isin(sparse_series(frame.df, cfg.sparse.min_sale_days))
    keys = frame.df.drop_duplicates("unique_id").set_index("unique_id")[["store_id", "product_id"]]
    parts = parts.merge(keys, left_on="unique_id", right_index=True, how="left")
    parts["off_menu"] = calendar_of(frame).off_menu(parts)
    return parts


def month_model(cfg: TrainingConfig, params: dict[str, Any], h: int) -> LGBMModel | None:
    """The ``lightgbm_month`` candidate (``training.month_candidate``): LightGBM with month lags, or None when off,
    when the main model already has month lags or when ``h`` is beyond what month lags know ahead."""
    if not cfg.month_candidate or cfg.month_lags or h > MONTH_LAG_INFO_DAYS:
        return None
    return LGBMModel(params, cfg.lags, cfg.strategy, h, cfg.num_threads, cfg.seed, cfg.month_candidate,
                     cfg.month_lag_levels, name="lightgbm_month", cleansing=rule_from(cfg))


def merge_parts(*parts: pd.DataFrame | None) -> pd.DataFrame | None:
    """Component frames ``unique_id, ds, <model>`` side by side (None when there is none)."""
    have = [p for p in parts if p is not None]
    if not have:
        return None
    out = have[0]
    for p in have[1:]:
        out = out.merge(p, on=["unique_id", "ds"], how="outer")
    return out


SPARSE_REPLACED = (*STAT_COMPONENTS, *RULE_NAMES, "ensemble")  # local models that cannot read a sparse history


def final_mean(parts: pd.DataFrame, weights: Weights) -> np.ndarray:
    """The registered model's point forecast: the segment's weights over the components, 0 where the store is
    closed or the product retired. On sparse series the local statistical components (Croston, ETS, the weekday
    rule...) are replaced by the window mean before weighting: one sale is never repeated daily, while the global
    LightGBM, which learns from every series, keeps its own forecast (measured on Maven: replacing LightGBM there
    too moved the intermittent segment's WAPE 0.657 -> 0.706)."""
    if "sparse" in parts and "window_mean" in parts and parts["sparse"].any():
        sparse = parts["sparse"].to_numpy(bool)
        wm = parts["window_mean"].to_numpy(float)
        parts = parts.assign(**{m: np.where(sparse, wm, parts[m].to_numpy(float))
                                for m in SPARSE_REPLACED if m in parts})
        if "ensemble" in parts and "lightgbm" in parts:
            parts["ensemble"] = np.where(sparse, 0.5 * (parts["lightgbm"].to_numpy(float) + wm),
                                         parts["ensemble"].to_numpy(float))
    mean = apply_weights(parts, weights)
    if "off_menu" in parts:
        mean = np.where(parts["off_menu"].to_numpy(bool), 0.0, mean)
    return mean


def needs(weights: Weights) -> tuple[bool, bool, bool]:
    """(LightGBM, statistical models, AutoETS) needed by these weights."""
    used = used_models(weights)
    lg = bool(used & {"lightgbm", "ensemble", "twoway"})  # twoway is built from LightGBM's forecasts
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
                                   c.month_lag_levels, cleansing=rule_from(c)).fit(frame)
        if use_stats:
            self.stats_ = StatsModels(7, c.ets_model, use_ets).fit(frame)
        self.lgbm_month_ = None
        if "lightgbm_month" in used_models(self.weights):
            month = month_model(c, self.params, c.horizon)
            self.lgbm_month_ = month.fit(frame) if month is not None else None
        rule = SegmentRule(
            new_days=c.new_days, slow_mean=c.slow_mean, intermittent_zero_share=c.intermittent_zero_share
        )
        self.segments_ = segment_series(frame.df, rule=rule)
        self.sparse_ = set(sparse_series(frame.df, c.sparse.min_sale_days))
        self.last_date_ = frame.last_date
        self.ids_ = active_series(frame.df, self.last_date_, c.dead_days)
        # the weekday rule and the window mean need the last weeks, twoway its affinity window; the future frame
        # needs the last day
        keep = max(56, c.sparse.window_days, c.twoway.window_days if c.twoway.enabled else 0)
        recent = frame.df[frame.df["ds"] > self.last_date_ - pd.Timedelta(days=keep)]
        manifest = {k: frame.manifest[k] for k in ("calendar", "products", "config") if k in (frame.manifest or {})}
        self.tail_ = ModelFrame(recent.reset_index(drop=True), frame.static, frame.exog, manifest)
        tail = frame.df[frame.df["ds"] == self.last_date_]
        self.keys_ = tail.set_index("unique_id")[["store_id", "product_id"]]
        return self

    def forecast(self, frame: ModelFrame, h: int | None = None, lgbm: pd.DataFrame | None = None,
                 stats: pd.DataFrame | None = None, ids: list[str] | None = None,
                 segments: pd.Series | None = None, sparse: set[str] | None = None) -> pd.DataFrame:
        """The one predict path: components of ``ids`` after ``frame``'s last day -> the final mean (``final_mean``),
        stores opening with no series from the open stores' mean (``new_store_means``, before the launches, so a
        launch is cloned into a new store too), launches cloned from like items, the predictive distribution
        (``attach_uncertainty``, with the window calibration). Rows ``unique_id, store_id, product_id, ds, segment,
        mean, dispersion, shared_dispersion, [store_dispersion], q..``. ``lgbm``/``stats`` are the component
        forecasts (computed by the caller: the fitted models here, the fitted trees on newer data in the batch, on
        Dask in the distributed batch)."""
        from training.launch import launch_means, new_store_means

        h = h or self.cfg.horizon
        ids = ids if ids is not None else active_series(frame.df, frame.last_date, self.cfg.dead_days)
        parts = assemble(frame, ids, h, self.cfg, lgbm, stats)
        if segments is not None:
            parts["segment"] = parts["unique_id"].map(segments).fillna("fast")
        if sparse is not None:
            parts["sparse"] = parts["unique_id"].isin(sparse)
        out = parts[["unique_id", "ds", "segment", "store_id", "product_id"]].assign(
            mean=final_mean(parts, self.weights))
        stores = new_store_means(frame, out, h, self.cfg.launch)  # opening soon (or just opened), no series yet
        if len(stores):
            out = pd.concat([out, stores], ignore_index=True)
        launches = launch_means(frame, out, h, self.cfg.launch)  # on the menu soon, no series yet
        if len(launches):
            out = pd.concat([out, launches], ignore_index=True)
        return attach_uncertainty(out, self.uncertainty, self.cfg.quantiles, getattr(self, "calibration", None))

    def predict(self, h: int | None = None, future: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows ``unique_id, store_id, product_id, ds, horizon, segment, mean, q0.5.., alpha, shared`` for the
        ``h`` days after the training data, through ``forecast``.

        ``future`` (the pyfunc's requested keys) is not a source of known inputs: those come from the planned
        calendar stored with the model (``training.future``), as in every other path.
        """
        del future
        h = h or self.cfg.horizon
        ids = [u for u in self.ids_ if u in set(self.tail_.df["unique_id"])]
        fut = future_frame(self.tail_, ids, h)
        lg = merge_parts(*(m.predict(h, fut, ids) for m in (self.lgbm_, getattr(self, "lgbm_month_", None))
                           if m is not None))
        st = self.stats_.predict(h, ids) if self.stats_ is not None else None
        out = self.forecast(self.tail_, h, lg, st, ids, self.segments_, self.sparse_)
        out["horizon"] = (out["ds"] - self.last_date_).dt.days
        out = out.rename(columns={"dispersion": "alpha", "shared_dispersion": "shared"})
        cols = ["unique_id", "store_id", "product_id", "ds", "horizon", "segment", "mean",
                *[f"q{q}" for q in self.cfg.quantiles], "alpha", "shared"]
        return out[cols].sort_values(["unique_id", "ds"], ignore_index=True)

    def feature_importance(self) -> pd.Series | None:
        """The LightGBM part's importances (the month-lag one when the blend uses only that); None without one."""
        part = self.lgbm_ if self.lgbm_ is not None else self.lgbm_month_
        return part.feature_importance() if part is not None else None
