"""Pooled forecast metrics over a backtest frame, built on utilsforecast's per-series losses.

Why pooled: planners read one WAPE (sum|e| / sum y) per model, not a mean of per-series ratios that explodes on
slow series. MASE and the scaled pinball loss are per series (scaled by the in-sample seasonal-naive error up to
each cutoff, utilsforecast semantics) and averaged over the series whose scale is non-zero.

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


def score(
    df: pd.DataFrame,
    models: list[str],
    train_df: pd.DataFrame | None = None,
    quantiles: list[float] | None = None,
    levels: tuple[int, ...] = (80, 95),
) -> dict[str, dict[str, float]]:
    """``{model: {wape, bias, mase, coverage_80, coverage_95, spl, n}}`` for ``unique_id, ds, cutoff, y`` rows.

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
        r: dict[str, float] = {
            "wape": float(e.abs().sum() / total) if total > 0 else float("nan"),
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
    """``{model: {key value: WAPE}}`` e.g. by horizon."""
    g = df.groupby(key)
    denom = g["y"].sum()
    return {
        m: {str(k): float(v) for k, v in ((df[m] - df["y"]).abs().groupby(df[key]).sum() / denom).items()}
        for m in models
    }
