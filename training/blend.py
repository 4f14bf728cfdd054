"""The ``final`` forecast: per-segment weights over the candidate models, chosen by the loss the orders pay.

Why this loss: the replenishment engine orders up to a quantile of the protection window's total demand (review
period + lead time) at the policy's service levels. WAPE is minimised by the median and rewarded under-forecasting
(inverse-WAPE weights gave the incumbent's rule, biased -13.8%, a 0.29 weight). So every candidate is scored by the
**scaled pinball loss of window totals** (``window_loss``): per series and inner window, the total of horizons
1..``window_days`` against the quantiles, at ``service_levels``, of the candidate's own negative-binomial window
distribution (dispersion fitted on the same out-of-sample rows), summed and divided by the summed actual totals.
Actuals are latent demand (``y_filled``: censored days unconstrained), so stockouts do not teach the selection to
under-forecast.

Rule (``learn_weights``): a **bias guard** drops candidates whose window totals are off by more than ``max_bias``
(unless none is inside it: then the least biased); the rest within ``tolerance`` of the segment's best loss get weight
``loss ** -power`` (normalised); per-segment weights are **shrunk** towards the pooled (``all``) weights by
``n / (n + shrink_windows)`` (``n`` the segment's windows), and a segment needs windows from at least ``min_cutoffs``
inner cutoffs (``training.selection.windows`` >= 3): one window never decides. WAPE and MASE stay in the reports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting import uncertainty as unc

Weights = dict[str, dict[str, float]]  # segment (or "all") -> model -> weight (sums to 1)

CANDIDATES = ("lightgbm", "lightgbm_month", "auto_ets", "croston", "seasonal_naive", "incumbent", "weekday_mean",
              "ensemble", "window_mean")


def pinball(actual: np.ndarray, quantile: np.ndarray, q: float) -> np.ndarray:
    """Pinball (quantile) loss per element."""
    d = np.asarray(actual, float) - np.asarray(quantile, float)
    return np.maximum(q * d, (q - 1.0) * d)


def window_table(rows: pd.DataFrame, models: list[str], window_days: int) -> pd.DataFrame:
    """Per series x cutoff over horizons 1..``window_days``: actual latent total ``A`` (``y_filled``, else ``y``),
    segment, and per model the sum ``M:<m>`` and square sum ``Q:<m>`` of its daily means."""
    r = rows[(rows["horizon"] >= 1) & (rows["horizon"] <= window_days)]
    target = "y_filled" if "y_filled" in r else "y"
    agg = {"A": (target, "sum"), "n": ("ds", "size"), "segment": ("segment", "first")}
    sq = r[models].to_numpy(float) ** 2
    r = r.assign(**{f"_sq_{m}": sq[:, i] for i, m in enumerate(models)})
    for m in models:
        agg[f"M:{m}"] = (m, "sum")
        agg[f"Q:{m}"] = (f"_sq_{m}", "sum")
    win = r.groupby(["unique_id", "cutoff"], as_index=False).agg(**agg)
    full = win["n"].max() if len(win) else 0
    return win[win["n"] == full].reset_index(drop=True)


def dispersion(rows: pd.DataFrame, m: str) -> tuple[float, float]:
    """(NB alpha, shared level variance) of model ``m`` on out-of-sample rows (latent target on every day)."""
    target = "y_filled" if "y_filled" in rows else "y"
    y, mu = rows[target].to_numpy(float), rows[m].to_numpy(float)
    if len(y) < 30 or not np.isfinite(mu).all():
        return 0.3, 0.0
    alpha = unc.fit_dispersion(y, mu)
    w = rows.assign(_mu2=mu ** 2, _y=y).groupby(["unique_id", "cutoff"]).agg(S=("_y", "sum"), M=(m, "sum"),
                                                                              Q=("_mu2", "sum"))
    return alpha, unc.fit_shared_variance(w["S"], w["M"], w["Q"], alpha)


def window_loss(win: pd.DataFrame, m: str, params: tuple[float, float], levels: list[float]) -> tuple[float, float]:
    """(scaled pinball of window totals averaged over ``levels``, relative bias of window totals) for model ``m``."""
    A, M, Q = win["A"].to_numpy(float), win[f"M:{m}"].to_numpy(float), win[f"Q:{m}"].to_numpy(float)
    total = A.sum()
    if total <= 0 or not len(A):
        return float("nan"), float("nan")
    alpha, shared = params
    losses = [pinball(A, unc.window_nb_quantile(M, Q, alpha, min(shared, alpha), q), q).sum() / total
              for q in levels]
    return float(np.mean(losses)), float((M.sum() - total) / total)


def _rule(loss: pd.Series, bias: pd.Series, tolerance: float, power: float, max_bias: float) -> dict[str, float]:
    ok = loss.dropna()
    ok = ok[np.isfinite(ok)]
    if ok.empty:
        return {}
    guard = ok[bias.reindex(ok.index).abs() <= max_bias]
    if guard.empty:  # every candidate is biased: keep the least biased one
        guard = ok.loc[[bias.reindex(ok.index).abs().idxmin()]]
    best = float(guard.min())
    if best <= 0:
        return {str(guard.idxmin()): 1.0}
    keep = guard[guard <= best * (1 + tolerance)]
    raw = keep.astype(float) ** -power
    return {str(k): float(v) for k, v in (raw / raw.sum()).items()}


def learn_weights(
    rows: pd.DataFrame,
    candidates: list[str],
    segments: tuple[str, ...] | list[str] = (),
    *,
    window_days: int = 7,
    levels: list[float] | tuple[float, ...] = (0.9, 0.95, 0.97),
    tolerance: float = 0.05,
    power: float = 4.0,
    max_bias: float = 0.10,
    shrink_windows: float = 100.0,
    min_cutoffs: int = 3,
    min_windows: int = 30,
    report: dict | None = None,
) -> Weights:
    """Weights per segment from out-of-sample rows ``unique_id, cutoff, ds, horizon, y[_filled], segment, <cands>``.

    ``report`` (optional dict) receives each segment's losses, biases and window counts: what the choice rests on.
    """
    cands = [m for m in candidates if m in rows]
    if not cands:
        raise ValueError("no candidate model in the learning rows")
    n_cut = rows["cutoff"].nunique() if "cutoff" in rows else 1
    if n_cut < min_cutoffs:
        raise ValueError(f"selection needs >= {min_cutoffs} inner windows, got {n_cut}")
    win = window_table(rows, cands, window_days)
    params = {m: dispersion(rows, m) for m in cands}
    levels = list(levels)

    def scored(sub: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        res = {m: window_loss(sub, m, params[m], levels) for m in cands}
        return pd.Series({m: v[0] for m, v in res.items()}), pd.Series({m: v[1] for m, v in res.items()})

    loss, bias = scored(win)
    pooled = _rule(loss, bias, tolerance, power, max_bias) or {cands[0]: 1.0}
    out: Weights = {"all": pooled}
    if report is not None:
        report["all"] = {"loss": loss.round(5).to_dict(), "bias": bias.round(4).to_dict(), "windows": int(len(win))}
    for seg in segments:
        sub = win[win["segment"] == seg]
        if len(sub) < min_windows or sub["cutoff"].nunique() < min_cutoffs:
            continue
        sl, sb = scored(sub)
        raw = _rule(sl, sb, tolerance, power, max_bias)
        if not raw:
            continue
        lam = len(sub) / (len(sub) + shrink_windows)
        names = sorted(set(raw) | set(pooled))
        w = {m: lam * raw.get(m, 0.0) + (1 - lam) * pooled.get(m, 0.0) for m in names}
        out[seg] = {m: v for m, v in w.items() if v > 1e-9}
        if report is not None:
            report[seg] = {"loss": sl.round(5).to_dict(), "bias": sb.round(4).to_dict(), "windows": int(len(sub)),
                           "shrink": round(lam, 3)}
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
