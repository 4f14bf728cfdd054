"""The ``final`` forecast: per-segment inverse-error weights over the candidate models, learned out of sample.

Why: no single model wins everywhere (LightGBM on fast series, Croston or ETS on intermittent ones, and on a new
log nobody knows in advance). Weights are learned per segment (``all`` as fallback for thin segments) from
forecasts whose targets lie *before* the origin being forecast, so a backtest score of ``final`` stays honest.

Rule: candidates whose WAPE on the learning rows is within ``tolerance`` of the segment's best get weight
``WAPE ** -power`` (normalised); the others get 0. A high power makes it "select the best"; the tolerance keeps
clearly worse models (seasonal naive, usually) out of the mix, which an inverse-error average would not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Weights = dict[str, dict[str, float]]  # segment (or "all") -> model -> weight (sums to 1)

CANDIDATES = ("lightgbm", "auto_ets", "croston", "seasonal_naive", "incumbent", "weekday_mean")


def _rule(wapes: pd.Series, tolerance: float, power: float) -> dict[str, float]:
    w = wapes.dropna()
    w = w[np.isfinite(w)]
    if w.empty:
        return {}
    best = float(w.min())
    if best <= 0:
        return {str(w.idxmin()): 1.0}
    keep = w[w <= best * (1 + tolerance)]
    raw = keep.astype(float) ** -power
    return {str(k): float(v) for k, v in (raw / raw.sum()).items()}


def learn_weights(
    rows: pd.DataFrame,
    candidates: list[str],
    segments: tuple[str, ...] | list[str] = (),
    tolerance: float = 0.10,
    power: float = 4.0,
    min_rows: int = 150,
) -> Weights:
    """Weights per segment from out-of-sample rows ``y, censored, segment, <candidates>`` (censored days skipped)."""
    c = rows[~rows["censored"]] if "censored" in rows else rows
    cands = [m for m in candidates if m in c]
    if not cands:
        raise ValueError("no candidate model in the learning rows")

    def wapes(sub: pd.DataFrame) -> pd.Series:
        total = float(sub["y"].sum())
        if total <= 0:
            return pd.Series(dtype=float)
        return pd.Series({m: float((sub[m] - sub["y"]).abs().sum()) / total for m in cands})

    out: Weights = {"all": _rule(wapes(c), tolerance, power) or {cands[0]: 1.0}}
    for seg in segments:
        sub = c[c["segment"] == seg]
        if len(sub) >= min_rows:
            w = _rule(wapes(sub), tolerance, power)
            if w:
                out[seg] = w
    return out


def apply_weights(df: pd.DataFrame, weights: Weights) -> np.ndarray:
    """The blended forecast for rows with ``segment`` and every weighted model's column."""
    out = np.zeros(len(df))
    seg = df["segment"].to_numpy() if "segment" in df else np.full(len(df), "all")
    for s in np.unique(seg):
        w = weights.get(str(s), weights["all"])
        mask = seg == s
        out[mask] = sum(v * df[m].to_numpy(float)[mask] for m, v in w.items())
    return out


def used_models(weights: Weights) -> set[str]:
    return {m for w in weights.values() for m, v in w.items() if v > 0}
