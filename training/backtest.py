"""Rolling-origin backtest of every model at store x product x day, by segment, by horizon and through the BOM.

Protocol: origins ``last - horizon - step*k`` (k = origins-1 .. 0), each model refit on data up to the origin and
forecasting ``horizon`` days for the series that sold up to the origin (series that start later are not scored).
Uncertainty for each origin is fitted on *inner* windows that end at the origin (out-of-sample residuals of the same
models, ``calib_windows`` of them), so reported coverage is honest. Forecasts are cached by cutoff: with a weekly step
and a 14-day horizon, inner windows coincide with earlier origins and cost nothing.

Scoring (``summarize``): where the source holds the realised demand before censoring (the generator's
``t_demand_truth.realised_qty``), every day is scored against it, and observed-sales scores on uncensored days are
reported beside; elsewhere (real logs) the main metrics use uncensored days, censored store x product x days are scored
apart against the observed sales (a lower bound of demand) and their share is reported.

The oracle is the generator's true distribution (``t_demand_truth.expected_qty`` and the NB alpha in the source meta):
its median is the point forecast for WAPE and its quantiles are scored by pinball, so it is the floor noise leaves.
Material level multiplies product forecasts and actuals by ``t_bom`` and weighs them by unit cost (error in $ at
cost, since grams, millilitres and pieces cannot be added); the incumbent's own records
(``t_replenishment_forecast``) are compared there, taking for each origin its latest forecast issued no later than
the morning after the origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecasting import uncertainty as unc
from forecasting.config import TrainingConfig
from forecasting.errors import DataError
from forecasting.evaluation.metrics import against, at_cost, score, wape_by, with_true_distribution
from training.blend import CANDIDATES, Weights, learn_weights, window_losses, window_tables
from training.calibration import fit_calibration
from training.cleansing import rule_from
from training.data import SEGMENTS, ModelFrame, SegmentRule
from training.forecaster import active_series, assemble, final_mean, merge_parts, month_model, needs
from training.models import LGBMModel, StatsModels, future_frame
from training.source import EvalSources

MIN_TRAIN_DAYS = 35
MIN_BLEND_WINDOWS = 3  # the blend's weights are never learned on fewer inner windows (issue 11)
NBParams = dict[str, tuple[float, float]]  # segment (or "all") -> (alpha, shared)


def lgbm_params(cfg: TrainingConfig, tuned: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config parameters, overridden by tuned ones (``replenish tune``)."""
    return {**cfg.lgbm, **(tuned or {})}


def fit_uncertainty(cal: pd.DataFrame, models: list[str], min_rows: int = 300) -> dict[str, NBParams]:
    """Per model and segment NB dispersion (MLE) and shared level variance from out-of-sample forecasts."""
    c = cal[~cal["censored"]]
    out: dict[str, NBParams] = {}
    for m in models:
        params: NBParams = {}
        for seg in ("all", *SEGMENTS):
            sub = c if seg == "all" else c[c["segment"] == seg]
            if len(sub) < min_rows:
                continue
            alpha = unc.fit_dispersion(sub["y"], sub[m])
            w = sub.assign(mu2=sub[m] ** 2).groupby(["unique_id", "cutoff"]).agg(S=("y", "sum"), M=(m, "sum"),
                                                                                  Q=("mu2", "sum"))
            params[seg] = (alpha, unc.fit_shared_variance(w["S"], w["M"], w["Q"], alpha))
        if "all" not in params:
            params["all"] = (unc.fit_dispersion(c["y"], c[m]) if len(c) else 0.3, 0.0)
        out[m] = params
    return out


def add_intervals(
    df: pd.DataFrame, params: dict[str, NBParams], quantiles: list[float], seed: int = 0,
    row_alpha: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Quantile columns ``{m}-q{q}`` (integers; ``q0.5`` always, the point WAPE scores), continuous interval bounds
    ``{m}-lo/hi-{80,95}`` and ``y_jit``. ``row_alpha`` gives a model its own dispersion per row (the final
    model's after the window calibration, as served) instead of its segment's."""
    df = df.copy()
    rng = np.random.default_rng(seed)
    df["y_jit"] = df["y"] - rng.random(len(df))
    for m, p in params.items():
        alpha = df["segment"].map(lambda s, p=p: p.get(s, p["all"])[0]).to_numpy(float)
        if row_alpha and m in row_alpha:
            alpha = np.asarray(row_alpha[m], dtype=float)
        mu = df[m].to_numpy(float)
        for q in sorted({0.5, *quantiles}):  # the median always: the point WAPE is scored on (as served)
            df[f"{m}-q{q}"] = unc.nb_quantile(mu, alpha, q)
        for lv in (80, 95):
            lo, hi = (1 - lv / 100) / 2, 1 - (1 - lv / 100) / 2
            df[f"{m}-lo-{lv}"] = unc.nb_interp_quantile(mu, alpha, lo)
            df[f"{m}-hi-{lv}"] = unc.nb_interp_quantile(mu, alpha, hi)
    return df


def material_level(preds: pd.DataFrame, models: list[str], bom: pd.DataFrame) -> pd.DataFrame:
    """Product rows -> store x material x day rows (forecasts and actuals times qty_per_unit, summed)."""
    x = preds[["store_id", "product_id", "ds", "cutoff", "horizon", "y", "censored", *models]].merge(
        bom, on="product_id", how="inner"
    )
    for c in ["y", *models]:
        x[c] = x[c] * x["qty_per_unit"]
    agg = {**{c: "sum" for c in ["y", *models]}, "censored": "any"}
    if "unit_cost" in x:
        agg["unit_cost"] = "first"  # material errors weighed in $ (evaluation.metrics.at_cost)
    g = x.groupby(["store_id", "material_id", "ds", "cutoff", "horizon"], as_index=False).agg(agg)
    g["unique_id"] = g["store_id"].astype(str) + "_m" + g["material_id"].astype(str)
    return g


def attach_incumbent_records(mat: pd.DataFrame, records: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Rows with the incumbent's own forecast, the latest issued no later than the day after each origin."""
    parts = []
    for cutoff in mat["cutoff"].unique():
        cutoff = pd.Timestamp(cutoff)
        r = records[
            (records["issued_on"] <= cutoff + pd.Timedelta(days=1))
            & (records["ds"] > cutoff)
            & (records["ds"] <= cutoff + pd.Timedelta(days=horizon))
        ]
        r = r.sort_values("issued_on").groupby(["store_id", "material_id", "ds"], as_index=False).last()
        parts.append(r.assign(cutoff=cutoff)[["store_id", "material_id", "ds", "cutoff", "predicted_qty"]])
    rec = pd.concat(parts, ignore_index=True).rename(columns={"predicted_qty": "incumbent_records"})
    return mat.merge(rec, on=["store_id", "material_id", "ds", "cutoff"], how="inner")


@dataclass
class BacktestResult:
    preds: pd.DataFrame
    metrics: dict[str, Any]
    models: list[str]
    final: str
    uncertainty: dict[str, NBParams]  # fitted on all origins' out-of-sample rows: what `train` registers
    cutoffs: list[pd.Timestamp]
    lgbm: LGBMModel | None = None
    timings: dict[str, float] = field(default_factory=dict)
    weights: Weights = field(default_factory=dict)  # the final blend, learned on every origin's out-of-sample rows


class Backtester:
    """Fits every model at each needed cutoff once (cached) and scores them."""

    def __init__(
        self,
        cfg: TrainingConfig,
        params: dict[str, Any] | None = None,
        sources: EvalSources | None = None,
        progress: Callable[[str], None] | None = None,
        with_stats: bool = True,
    ) -> None:
        self.cfg = cfg
        self.params = params if params is not None else dict(cfg.lgbm)
        self.sources = sources or EvalSources()
        self.progress = progress or (lambda _msg: None)
        self.with_stats = with_stats
        self.rule = SegmentRule(new_days=cfg.new_days, slow_mean=cfg.slow_mean,
                                intermittent_zero_share=cfg.intermittent_zero_share)
        self.blend_windows = cfg.blend_windows  # inner windows the blend learns on (``cutoffs`` may lower it)
        self._cache: dict[pd.Timestamp, pd.DataFrame] = {}
        self._stats_done: set[pd.Timestamp] = set()  # cutoffs whose cached forecast has the statistical models
        self.lgbm_: dict[pd.Timestamp, LGBMModel] = {}
        self.timings: dict[str, float] = {"lightgbm": 0.0, "stats": 0.0}
        self.oracle_missing = 0

    @property
    def rule_name(self) -> str:
        """The same-weekday rule is "incumbent" only where an incumbent system exists (its records are in the
        source); on a plain POS log it is just another baseline, "weekday_mean"."""
        return "incumbent" if self.sources.incumbent is not None else "weekday_mean"

    @property
    def models(self) -> list[str]:
        names = ["lightgbm", self.rule_name, "window_mean"]
        if self.cfg.twoway.enabled:
            names.insert(1, "twoway")  # arithmetic on LightGBM's forecasts (training.twoway): no extra fit
        if self.with_stats and month_model(self.cfg, self.params, getattr(self, "h", self.cfg.horizon)) is not None:
            names.insert(1, "lightgbm_month")
        if self.with_stats:
            names += ["seasonal_naive", "croston"]
            if self.cfg.run_ets:
                names += ["auto_ets", "ensemble"]
        if self.sources.truth is not None:
            names.append("oracle")
        return names

    def forecast_at(self, frame: ModelFrame, cutoff: pd.Timestamp, h: int, stats: bool = True) -> pd.DataFrame:
        """Every model's forecast for (cutoff, cutoff + h], joined with actuals, segment and horizon. ``stats=False``
        leaves the statistical models out (an inner window that only teaches the blend, whose candidates need none
        of them); a later call that needs them refits the cutoff."""
        cutoff = pd.Timestamp(cutoff)
        stats = stats and self.with_stats
        if cutoff in self._cache and (cutoff in self._stats_done or not stats):
            return self._cache[cutoff]
        train = frame.until(cutoff)
        if train.df.empty or (cutoff - train.df["ds"].min()).days + 1 < MIN_TRAIN_DAYS:
            raise DataError(f"too little history before {cutoff.date()}: need {MIN_TRAIN_DAYS} days")
        ids = active_series(train.df, cutoff, self.cfg.dead_days)  # dead items are neither forecast nor scored
        if not ids:
            raise DataError(f"no series has data on {cutoff.date()}")
        t0 = time.perf_counter()
        lg = LGBMModel(self.params, self.cfg.lags, self.cfg.strategy, h, self.cfg.num_threads, self.cfg.seed,
                       self.cfg.month_lags, self.cfg.month_lag_levels, cleansing=rule_from(self.cfg))
        lg.fit(train)
        fut = future_frame(train, ids, h)  # the one future builder, as the batch forecast
        lgp = lg.predict(h, fut, ids)
        month = month_model(self.cfg, self.params, h) if self.with_stats else None  # tuning: LightGBM alone
        if month is not None:
            lgp = merge_parts(lgp, month.fit(train).predict(h, fut, ids))
        self.lgbm_[cutoff] = lg
        t1 = time.perf_counter()
        self.timings["lightgbm"] += t1 - t0
        st = None
        if stats:
            self._stats_done.add(cutoff)
            st = StatsModels(7, self.cfg.ets_model, self.cfg.run_ets).fit(train).predict(h, ids)
            self.timings["stats"] += time.perf_counter() - t1
        out = assemble(train, ids, h, self.cfg, lgp, st)  # the components as the registered model puts them
        if "auto_ets" not in out:
            out = out.drop(columns=["ensemble"], errors="ignore")
        cols = ["unique_id", "ds", "y", "y_filled", "censored"]
        out = out.merge(frame.df[cols], on=["unique_id", "ds"], how="inner")
        out["cutoff"] = cutoff
        out["horizon"] = (out["ds"] - cutoff).dt.days
        truth = self.sources.truth
        if truth is not None:
            t = truth.rename(columns={"expected_qty": "oracle"})[["store_id", "product_id", "ds", "oracle"]]
            out = out.merge(t, on=["store_id", "product_id", "ds"], how="left")
            self.oracle_missing += int(out["oracle"].isna().sum())  # reported: truth absent = 0 expected
            out["oracle"] = out["oracle"].fillna(0.0)
        self._cache[cutoff] = out
        return out

    @staticmethod
    def inner_cutoffs(cutoff: pd.Timestamp, h: int, step: int, n: int) -> list[pd.Timestamp]:
        """Cutoffs of the ``n`` inner windows of an origin: whole horizons that end on or before it, a ``step``
        apart (the newest first), so they are the latest evidence and coincide with earlier origins (cached)."""
        gap = min(step, h)
        return [cutoff - pd.Timedelta(days=h + gap * j) for j in range(n)]

    def windows_that_fit(self, cutoff: pd.Timestamp, h: int, step: int, first: pd.Timestamp) -> int:
        """How many inner windows the blend can learn on before ``cutoff`` when the history starts on ``first``:
        the configured number, fewer when the history is short, never fewer than ``MIN_BLEND_WINDOWS`` (0: not
        even those fit). The backtest and the replay's weights ask the same question."""
        for n in range(max(self.cfg.blend_windows, MIN_BLEND_WINDOWS), MIN_BLEND_WINDOWS - 1, -1):
            oldest = self.inner_cutoffs(cutoff, h, step, max(self.cfg.calib_windows, n))[-1]
            if (oldest - first).days + 1 >= MIN_TRAIN_DAYS:
                return n
        return 0

    def cutoffs(self, frame: ModelFrame, origins: int, step: int, h: int) -> list[pd.Timestamp]:
        """The origins, oldest first. Sets ``blend_windows``: the configured inner windows, or as many as the
        history holds before the first origin when it is short (a young store, a short log), never fewer than
        ``MIN_BLEND_WINDOWS``: one window never decides, and a short history still gets a backtest."""
        last = frame.last_date
        cuts = [last - pd.Timedelta(days=h + step * k) for k in range(origins - 1, -1, -1)]
        first = frame.df["ds"].min()
        n = self.windows_that_fit(cuts[0], h, step, first)
        if not n:
            days = (last - first).days + 1
            raise DataError(
                f"{days} days of history are too few for {origins} origins x {step} days step, horizon {h} "
                f"and {max(self.cfg.calib_windows, MIN_BLEND_WINDOWS)} inner windows before the first origin: "
                "reduce --origins/--horizon"
            )
        self.blend_windows = n
        if self.blend_windows < self.cfg.blend_windows:
            self.progress(f"the history holds {self.blend_windows} inner windows before the first origin, not "
                          f"the configured {self.cfg.blend_windows}: the blend learns on {self.blend_windows}")
        return cuts

    def run(
        self, frame: ModelFrame, origins: int | None = None, step: int | None = None, horizon: int | None = None
    ) -> BacktestResult:
        origins = origins or self.cfg.origins
        step = step or self.cfg.step_days
        h = horizon or self.cfg.horizon
        self.h = h
        cuts = self.cutoffs(frame, origins, step, h)
        models = self.models
        cands = self.candidates
        n_inner = max(self.cfg.calib_windows, self.blend_windows)
        cands_need_stats = needs({"all": dict.fromkeys(cands, 1.0)})[1]  # a candidate built on the statistical fit
        outer, by_origin, reports = [], {}, {}
        for i, c in enumerate(cuts):  # progress once per origin, oldest first (its inner windows are part of it)
            self.progress(f"backtest origin {i + 1} of {len(cuts)}: {c.date()} ({h} days ahead, "
                          f"{len(models)} models)")
            # the calibration windows fit every model's dispersion; the others only teach the blend its weights
            inner = [self.forecast_at(frame, ic, h, stats=k < self.cfg.calib_windows or cands_need_stats)
                     for k, ic in enumerate(self.inner_cutoffs(c, h, step, n_inner))]
            report: dict[str, Any] = {}
            weights = self.learn(pd.concat(inner[: self.blend_windows]), cands, report)
            by_origin[str(c.date())] = weights
            reports[str(c.date())] = report
            # the calibration windows lie before the origin too; their "final" uses the same weights (in sample
            # for the weights, out of sample for every model): enough to fit its dispersion
            cal = pd.concat(inner[: self.cfg.calib_windows])
            cal = cal.assign(final=final_mean(cal, weights))
            params = fit_uncertainty(cal, [*models, "final"])
            cur = self.forecast_at(frame, c, h)
            cur = cur.assign(final=final_mean(cur, weights))
            fp = params["final"]  # the dispersion this origin had (inner windows): what the calibration fits around
            sp = cur["segment"].map(lambda s, fp=fp: fp.get(s, fp["all"]))
            cur["final_alpha"] = [float(a) for a, _ in sp]
            cur["final_shared"] = [float(b) for _, b in sp]
            cur, alpha = self.calibrate(frame, cur, pd.concat(inner[: self.blend_windows]), weights)
            cur["final_alpha_served"] = alpha  # the dispersion served with it (the hour-level scores split it)
            outer.append(add_intervals(cur, params, self.cfg.quantiles, self.cfg.seed + i, {"final": alpha}))
        preds = pd.concat(outer, ignore_index=True)
        final_unc = fit_uncertainty(preds.assign(final=preds["final_raw"]), [*models, "final"])
        final_weights = self.learn(preds, cands) if len(cuts) >= 3 else by_origin[str(cuts[-1].date())]
        metrics, final = self.summarize(frame, preds, models, h)
        metrics.update(origins=[str(c.date()) for c in cuts], horizon=h, step_days=step)
        sel = self.cfg.selection
        metrics["blend"] = {"candidates": cands, "windows": self.blend_windows, "by_origin": by_origin,
                            "final_weights": final_weights, "selection": reports,
                            "loss": f"scaled pinball of {sel.window_days}-day window totals at "
                                    f"{sel.service_levels}, bias guard {sel.max_bias:.0%}"}
        if "oracle" in models:
            metrics["oracle_missing_rows"] = self.oracle_missing
        return BacktestResult(preds, metrics, models, final, final_unc, cuts, self.lgbm_.get(cuts[-1]), self.timings,
                              final_weights)

    def calibrate(self, frame: ModelFrame, cur: pd.DataFrame, inner: pd.DataFrame,
                  weights: Weights) -> tuple[pd.DataFrame, np.ndarray]:
        """The origin's final forecast as it would be served: the window calibration ``train`` stores with the
        model (``training.calibration``: a level factor per product and the shared variance), fitted here on the
        origin's inner windows only (out of sample), then applied as the batch forecast applies it. Returns the
        rows with ``final`` calibrated (``final_raw`` before) and each row's calibrated dispersion.

        Why: the API and the plan order on the calibrated forecast; scoring the uncalibrated one would quote a
        figure of a model that never runs."""
        cur = cur.assign(final_raw=cur["final"])
        alpha = cur["final_alpha"].to_numpy(float)
        if not self.cfg.calibration.enabled:
            return cur, alpha
        rows = inner.assign(final=final_mean(inner, weights))
        params = fit_uncertainty(rows, ["final"])["final"]
        calib = fit_calibration(rows, frame.df, "final", params, self.cfg.calibration, self.sources.bom)
        served = calib.apply(pd.DataFrame({"product_id": cur["product_id"].to_numpy(), "mean": cur["final"].to_numpy(),
                                           "dispersion": alpha, "shared_dispersion": cur["final_shared"].to_numpy()}))
        cur["final"] = served["mean"].to_numpy(float)
        return cur, served["dispersion"].to_numpy(float)

    def learn(self, rows: pd.DataFrame, cands: list[str], report: dict | None = None) -> Weights:
        """The final blend's weights from out-of-sample rows (``training.blend.learn_weights`` with
        ``training.selection``); a forced single model needs none."""
        if len(cands) == 1:
            return {"all": {cands[0]: 1.0}}
        sel = self.cfg.selection
        return learn_weights(rows, cands, SEGMENTS, window_days=sel.window_days, levels=sel.service_levels,
                             tolerance=sel.tolerance, power=sel.power, max_bias=sel.max_bias,
                             shrink_windows=sel.shrink_windows,
                             min_cutoffs=min(MIN_BLEND_WINDOWS, self.blend_windows),
                             method=sel.method, steps=sel.steps, report=report)

    @property
    def candidates(self) -> list[str]:
        """Models the final blend may weigh: ``training.final`` forces one (``auto``/``blend``: every baseline)."""
        if self.cfg.final not in ("auto", "blend") and self.cfg.final in self.models:
            return [self.cfg.final]
        allowed = set(self.cfg.selection.candidates or CANDIDATES)
        return [m for m in self.models if m in CANDIDATES and m in allowed]

    def scoring_rows(self, preds: pd.DataFrame) -> pd.DataFrame:
        """``preds`` as scored: the oracle as the true distribution (its mean, its quantiles, the median scored for
        WAPE as every model's; the mean also kept as ``oracle_mean``) when the source gives the truth's dispersion,
        and ``realised`` (demand before censoring) when the source has it."""
        rows = preds
        truth = self.sources.truth
        if "oracle" in rows:
            rows = rows.assign(oracle_mean=rows["oracle"])
            if self.sources.truth_alpha is not None:
                rows = with_true_distribution(rows, "oracle", rows["oracle_mean"].to_numpy(float),
                                              self.sources.truth_alpha, self.cfg.quantiles)
        if truth is not None and "realised_qty" in truth and truth["realised_qty"].notna().all():
            r = truth[["store_id", "product_id", "ds", "realised_qty"]].rename(columns={"realised_qty": "realised"})
            rows = rows.merge(r, on=["store_id", "product_id", "ds"], how="left")
            rows["realised"] = rows["realised"].fillna(rows["y"])  # no truth row: nothing was expected or censored
        return rows

    def summarize(
        self, frame: ModelFrame, preds: pd.DataFrame, models: list[str], h: int
    ) -> tuple[dict[str, Any], str]:
        """Scores: against realised demand on every day where the source has it (the generator), else against
        observed sales on uncensored days; observed-sales scores on uncensored days and the censored days beside."""
        train_df = frame.df[["unique_id", "ds", "y"]]
        qs = self.cfg.quantiles
        rows = self.scoring_rows(preds)
        realised = "realised" in rows
        cens = rows["censored"].to_numpy(bool)
        obs = rows[~cens]
        main = against(rows, "realised") if realised else obs
        scored = [*models, "final"]
        res: dict[str, Any] = {
            "scored_against": "realised demand before censoring, every day" if realised
            else "observed sales, uncensored days (censored days scored apart)",
            "models": score(main, scored, train_df, qs),
        }
        cands = self.candidates
        label = cands[0] if len(cands) == 1 else "blend"
        res["models"]["final"]["model"] = label
        res["final"] = label
        final = "final"
        res["by_segment"] = {
            seg: score(main[main["segment"] == seg], scored) for seg in SEGMENTS if (main["segment"] == seg).any()
        }
        res["by_horizon"] = wape_by(main, scored, "horizon")
        # the selection loss on the scored rows (every day against realised demand where known): what promote reads
        tables = window_tables(main if realised else rows, scored, self.cfg.selection.window_days)
        for m in scored:
            spl, bias = window_losses(tables, m, self.cfg.selection.service_levels) if tables else (np.nan, np.nan)
            res["models"].setdefault(m, {}).update(window_spl=spl, window_bias=bias)
        if realised:
            res["observed_uncensored"] = {"n": int(len(obs)), "note": "against observed sales on uncensored days",
                                          "models": score(obs, scored, train_df, qs)}
        res["censored"] = {"n": int(cens.sum()), "share": round(float(cens.mean()), 4) if len(cens) else 0.0,
                           "note": "against observed sales (a lower bound of demand)",
                           "models": score(rows[cens], scored) if cens.any() else {}}
        if "oracle" in rows:
            res["oracle"] = ("the true distribution: its median for WAPE, its quantiles for pinball and intervals"
                             if self.sources.truth_alpha is not None else "the true mean (no true dispersion known)")
        bom = self.sources.bom
        if bom is not None:
            point = list(scored)
            base = main if realised else rows
            mat = material_level(base, point, bom)  # sums of the means (a sum of medians runs low)
            mat_main = mat if realised else mat[~mat["censored"]]
            cost = "unit_cost" in mat and bool(mat["unit_cost"].notna().all())
            value = (lambda d, cols: at_cost(d, cols)) if cost else (lambda d, cols: d)
            res["material"] = {"units": "value at unit cost ($)" if cost else "material units (no unit costs)",
                               "models": score(value(mat_main, ["y", *point]), point)}
            if self.sources.incumbent is not None:
                both = attach_incumbent_records(mat_main, self.sources.incumbent, h)
                if len(both):
                    res["material"]["vs_incumbent_records"] = score(
                        value(both, ["y", *point, "incumbent_records"]), [*point, "incumbent_records"])
        return res, final


def selection_loss(rows: pd.DataFrame, model: str, sel) -> float:
    """The selection loss of one model on out-of-sample rows (``training.selection``): what tuning minimises."""
    return window_losses(window_tables(rows, [model], sel.window_days), model, sel.service_levels)[0]


def per_series(preds: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """One row per series x model over every scored origin: units actual and forecast, absolute error, WAPE, bias,
    censored days: where a model loses, series by series (written as Parquet and logged with the run)."""
    rows = preds
    keys = ["unique_id", "store_id", "product_id", "segment"]
    base = rows.groupby(keys, as_index=False).agg(days=("ds", "size"), censored_days=("censored", "sum"),
                                                  actual_units=("y", "sum"))
    parts = []
    for m in models:
        e = rows[m] - rows["y"]
        g = rows.assign(_abs=e.abs(), _err=e).groupby("unique_id").agg(
            forecast_units=(m, "sum"), abs_error=("_abs", "sum"), error=("_err", "sum"))
        part = base.merge(g, left_on="unique_id", right_index=True).assign(model=m)
        denom = part["actual_units"].where(part["actual_units"] > 0)
        part["wape"] = part["abs_error"] / denom
        part["bias"] = part["error"] / denom
        parts.append(part.drop(columns=["error"]))
    return pd.concat(parts, ignore_index=True)
