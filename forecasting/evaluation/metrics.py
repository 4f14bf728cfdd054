"""Pooled forecast metrics over a backtest frame, built on utilsforecast's per-series losses.

Why pooled: planners read one WAPE (sum|e| / sum y) per model, not a mean of per-series ratios that explodes on
slow series. MASE and the scaled pinball loss are per series (scaled by the in-sample seasonal-naive error up to
each cutoff, utilsforecast semantics) and averaged over the series whose scale is non-zero.

WAPE is scored on each model's *predictive median* (``{m}-q0.5`` when present), the point WAPE is minimised by, as
the oracle's is; ``wape_mean`` (the mean's WAPE) and ``bias`` are on the mean (the quantity the orders sum).

Coverage is scored on ``y_jit = y - u`` (u uniform, seeded) against the *continuous* quantiles of the forecast
(``forecasting.uncertainty.nb_interp_quantile``): the randomized-PIT check, exact for discrete counts. Integer
intervals of slow items always over-cover, so they would hide a mis-calibrated dispersion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from utilsforecast import losses

SEASONALITY = 7


def _finite_mean(s: pd.Series) -> float:
    v = s.replace([np.inf, -np.inf], np.nan).dropna()
    return float(v.mean()) if len(v) else float("nan")


def point(df: pd.DataFrame, m: str) -> pd.Series:
    """The point WAPE is scored on: the predictive median ``{m}-q0.5`` when present, else the column ``m``."""
    return df[f"{m}-q0.5"] if f"{m}-q0.5" in df else df[m]


def score(
    df: pd.DataFrame,
    models: list[str],
    train_df: pd.DataFrame | None = None,
    quantiles: list[float] | None = None,
    levels: tuple[int, ...] = (80, 95),
) -> dict[str, dict[str, float]]:
    """``{model: {wape, wape_mean, bias, mase, coverage_80, coverage_95, spl, n}}`` for ``unique_id, ds, cutoff, y``
    rows. ``wape`` uses the model's median ``{m}-q0.5`` when the rows have it (else its column), ``wape_mean``,
    ``bias`` and ``mase`` the column itself (the mean).

    Interval metrics appear only for models with ``{m}-lo-80`` etc. (and ``y_jit``); quantile columns are
    ``{m}-q{q}``. ``bias`` is relative: sum(forecast - y) / sum(y).
    """
    out: dict[str, dict[str, float]] = {}
    if df.empty:
        return out
    total = float(df["y"].sum())
    n_by_id = df.groupby(["unique_id", "cutoff"]).size().rename("n").reset_index()
    mase = None
    if train_df is not None:
        mase = losses.mase(df, models, SEASONALITY, train_df)
    for m in models:
        e = df[m] - df["y"]
        ep = point(df, m) - df["y"]
        r: dict[str, float] = {
            "wape": float(ep.abs().sum() / total) if total > 0 else float("nan"),
            "wape_mean": float(e.abs().sum() / total) if total > 0 else float("nan"),
            "bias": float(e.sum() / total) if total > 0 else float("nan"),
            "n": int(len(df)),
        }
        if mase is not None:
            r["mase"] = _finite_mean(mase[m])
        for lv in levels:
            if f"{m}-lo-{lv}" in df and "y_jit" in df:
                cov = losses.coverage(df, [m], lv, target_col="y_jit").merge(n_by_id, on=["unique_id", "cutoff"])
                r[f"coverage_{lv}"] = float((cov[m] * cov["n"]).sum() / cov["n"].sum())
        qcols = {q: f"{m}-q{q}" for q in (quantiles or []) if f"{m}-q{q}" in df}
        if qcols and train_df is not None:
            spl = [
                _finite_mean(losses.scaled_quantile_loss(df, {m: c}, SEASONALITY, train_df, q=q)[m])
                for q, c in qcols.items()
            ]
            r["spl"] = float(np.nanmean(spl))
        out[m] = r
    return out


def wape_by(df: pd.DataFrame, models: list[str], key: str) -> dict[str, dict[str, float]]:
    """``{model: {key value: WAPE}}`` e.g. by horizon (on the predictive median, as ``score``)."""
    g = df.groupby(key)
    denom = g["y"].sum()
    return {
        m: {str(k): float(v) for k, v in ((point(df, m) - df["y"]).abs().groupby(df[key]).sum() / denom).items()}
        for m in models
    }


def with_true_distribution(
    df: pd.DataFrame, col: str, mean: np.ndarray, alpha: float, quantiles: list[float] | None = None,
    levels: tuple[int, ...] = (80, 95),
) -> pd.DataFrame:
    """The oracle as the true distribution: ``col`` = its mean, ``{col}-q{q}`` its quantiles (``q0.5``, the median,
    always: the point ``score`` takes for WAPE) and ``{col}-lo/hi-{lv}`` its continuous interval bounds, for
    NB(``mean``, ``alpha``) days.

    Why the median: WAPE (absolute error) is minimised by the median, not the mean (at these volumes the true mean
    scores ~2.5% worse), and pinball at level q by the q-quantile; only then is the oracle row a floor no model can
    beat in expectation. Every model is scored by the same rule (its own predictive median).
    """
    from forecasting import uncertainty as unc

    out = df.copy()
    mu = np.asarray(mean, dtype=float)
    out[col] = mu
    for q in sorted({0.5, *(quantiles or [])}):
        out[f"{col}-q{q}"] = unc.nb_quantile(mu, alpha, q)
    for lv in levels:
        lo, hi = (1 - lv / 100) / 2, 1 - (1 - lv / 100) / 2
        out[f"{col}-lo-{lv}"] = unc.nb_interp_quantile(mu, alpha, lo)
        out[f"{col}-hi-{lv}"] = unc.nb_interp_quantile(mu, alpha, hi)
    return out


def against(df: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows scored against another actual (e.g. realised demand before censoring): ``y`` := ``target``, and the
    randomized-PIT ``y_jit`` moved with it (same uniform draw), so coverage stays comparable."""
    out = df.copy()
    if "y_jit" in out:
        out["y_jit"] = out[target] - (out["y"] - out["y_jit"])
    out["y"] = out[target].astype(float)
    return out


def at_cost(df: pd.DataFrame, cols: list[str], cost: str = "unit_cost") -> pd.DataFrame:
    """Material rows in value at unit cost ($): grams, millilitres and pieces cannot be added, dollars can, and a
    dollar of error is what a planner pays for whatever the unit."""
    out = df.copy()
    for c in cols:
        out[c] = out[c] * out[cost]
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Mean of ``a - b`` over paired runs (e.g. two policies on the same demand seeds) with its t interval.

    Why paired: both policies face the same sampled demand and deliveries, so the seed-to-seed swing of the level
    (the incumbent's total cost moves +-5% between seeds) cancels and only the policies' difference is left.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return mean_interval(d, level)


def mean_interval(x: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """``{mean, lo, hi, n}``: the mean of ``x`` with its Student-t interval (lo = hi = mean for one value)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    n = len(x)
    m = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": m, "lo": m, "hi": m, "n": n}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": n}
