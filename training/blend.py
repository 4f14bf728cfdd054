"""The ``final`` forecast: per-segment weights over the candidate models, chosen by the loss the orders pay.

Why this loss: the replenishment engine orders up to a quantile of the protection window's total demand (review
period + lead time) at the policy's service levels. WAPE is minimised by the median and rewarded under-forecasting
(inverse-WAPE weights gave the incumbent's rule, biased -13.8%, a 0.29 weight). So every candidate is scored by the
**scaled pinball loss of window totals** (``window_loss``): per series and inner window, the total of horizons
1..d for each protection-window length d in ``window_days`` (2 days: daily food deliveries; 7: a weekly supplier)
against the quantiles, at ``service_levels``, of a negative-binomial window distribution around the candidate's
window total whose one dispersion is fitted on those windows (so the spread follows the candidate's own errors);
summed and divided by the summed actual totals. Actuals are latent demand (``y_filled``: censored days
unconstrained), so stockouts do not teach the selection to under-forecast.

Rule (``learn_weights``): a **bias guard** drops candidates whose window totals are off by more than ``max_bias``
beyond the least biased candidate's bias (a level every candidate missed does not exclude them all); the rest are
combined by **greedy ensemble selection** (``method: greedy``, Caruana et al. 2004): ``steps`` times, the candidate
whose addition gives the equal-weight average the lowest window loss is added, with replacement, so the weights are
non-negative multiples of ``1 / steps`` and the combination never scores worse than its best member on the learning
windows (the older ``method: tolerance`` gives the candidates within ``tolerance`` of the best loss a weight
``loss ** -power``: on the generated history it lost to the ``ensemble`` candidate it had); per-segment weights
are **shrunk** towards the pooled (``all``) weights by
``n / (n + shrink_windows)`` (``n`` the segment's windows), and weights need windows from at least ``min_cutoffs``
inner cutoffs (``training.blend_windows`` >= 3): one window never decides. WAPE and MASE stay in the reports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting import uncertainty as unc
from forecasting.config import BLEND_CANDIDATES

Weights = dict[str, dict[str, float]]  # segment (or "all") -> model -> weight (sums to 1)

CANDIDATES = BLEND_CANDIDATES  # the one list, in the config (which validates training.selection.candidates)


def pinball(actual: np.ndarray, quantile: np.ndarray, q: float) -> np.ndarray:
    """Pinball (quantile) loss per element."""
    d = np.asarray(actual, float) - np.asarray(quantile, float)
    return np.maximum(q * d, (q - 1.0) * d)


def window_table(rows: pd.DataFrame, models: list[str], window_days: int) -> pd.DataFrame:
    """Per series x cutoff over horizons 1..``window_days``: actual latent total ``A`` (``y_filled``, else ``y``),
    segment, and per model the window's forecast total ``M:<m>``."""
    r = rows[(rows["horizon"] >= 1) & (rows["horizon"] <= window_days)]
    target = "y_filled" if "y_filled" in r else "y"
    agg = {"A": (target, "sum"), "n": ("ds", "size"), "segment": ("segment", "first")}
    for m in models:
        agg[f"M:{m}"] = (m, "sum")
    win = r.groupby(["unique_id", "cutoff"], as_index=False).agg(**agg)
    return win[win["n"] == window_days].reset_index(drop=True)


def window_loss(win: pd.DataFrame, m: str, levels: list[float]) -> tuple[float, float]:
    """(scaled pinball of window totals averaged over ``levels``, relative bias of window totals) for model ``m``.

    The window distribution is negative binomial around the model's window total with one dispersion fitted (MLE)
    on these windows for this model: every candidate gets the spread its own errors justify, so the loss ranks
    the window means at the quantiles the orders use, not how wide a model's naive daily noise happens to be."""
    return _totals_loss(win["A"].to_numpy(float), win[f"M:{m}"].to_numpy(float), levels)


def _totals_loss(A: np.ndarray, M: np.ndarray, levels: list[float]) -> tuple[float, float]:
    """``window_loss`` of actual window totals ``A`` against forecast window totals ``M``."""
    total = A.sum()
    if total <= 0 or not len(A) or not np.isfinite(M).all():
        return float("nan"), float("nan")
    alpha = unc.fit_dispersion(np.round(A), M)
    losses = [pinball(A, unc.nb_interp_quantile(np.maximum(M, 1e-6), alpha, q), q).sum() / total for q in levels]
    return float(np.mean(losses)), float((M.sum() - total) / total)


def window_losses(tables: dict[int, pd.DataFrame], m: str, levels: list[float],
                  segment: str | None = None) -> tuple[float, float]:
    """``window_loss`` averaged over the window lengths (bias: the longest window's), optionally one segment's."""
    ls, bias = [], float("nan")
    for days in sorted(tables):
        win = tables[days] if segment is None else tables[days][tables[days]["segment"] == segment]
        loss, bias = window_loss(win, m, levels)
        ls.append(loss)
    return (float(np.mean(ls)) if ls and np.isfinite(ls).all() else float("nan")), bias


def window_tables(rows: pd.DataFrame, models: list[str], lengths: list[int] | tuple[int, ...]) -> dict:
    """``window_table`` for each protection-window length the rows cover."""
    top = int(rows["horizon"].max()) if len(rows) else 0
    return {d: window_table(rows, models, d) for d in sorted(set(lengths)) if d <= top}


def _guarded(loss: pd.Series, bias: pd.Series, max_bias: float) -> pd.Series:
    """Finite losses of the candidates the bias guard keeps (a level every candidate missed excludes none)."""
    ok = loss.dropna()
    ok = ok[np.isfinite(ok)]
    if ok.empty:
        return ok
    b = bias.reindex(ok.index).abs()
    return ok[b <= b.min() + max_bias]


def _rule(loss: pd.Series, bias: pd.Series, tolerance: float, power: float, max_bias: float) -> dict[str, float]:
    guard = _guarded(loss, bias, max_bias)
    if guard.empty:
        return {}
    best = float(guard.min())
    if best <= 0:
        return {str(guard.idxmin()): 1.0}
    keep = guard[guard <= best * (1 + tolerance)]
    raw = keep.astype(float) ** -power
    return {str(k): float(v) for k, v in (raw / raw.sum()).items()}


def _greedy(tables: dict[int, pd.DataFrame], loss: pd.Series, bias: pd.Series, levels: list[float], steps: int,
            max_bias: float, segment: str | None = None) -> dict[str, float]:
    """Ensemble selection (Caruana et al., 2004): ``steps`` times, add (with replacement) the guarded candidate whose
    inclusion gives the equal-weight average the lowest window loss; weights = how often each was added.

    Why: window totals are linear in the forecasts, so a combination is scored exactly like a model; the result
    never loses to its best member on the learning windows (the first step is that member), and weights come in
    ``1 / steps`` quanta on a few well-scored combinations rather than ``loss ** -power`` on a winner of 3 windows
    (which moved a whole segment to one model, e.g. the weekday rule at 0.81, from one origin to the next)."""
    pool = list(_guarded(loss, bias, max_bias).index)
    if not pool:
        return {}
    tabs = {d: (t if segment is None else t[t["segment"] == segment]) for d, t in tables.items()}
    acts = {d: t["A"].to_numpy(float) for d, t in tabs.items()}
    cols = {d: {m: t[f"M:{m}"].to_numpy(float) for m in pool} for d, t in tabs.items()}
    acc = {d: np.zeros(len(t)) for d, t in tabs.items()}
    counts: dict[str, int] = {}
    for k in range(1, steps + 1):
        best, best_loss = pool[0], np.inf
        for m in pool:
            ls = [_totals_loss(acts[d], (acc[d] + cols[d][m]) / k, levels)[0] for d in tabs]
            v = float(np.mean(ls)) if np.isfinite(ls).all() else np.inf
            if v < best_loss:
                best, best_loss = m, v
        counts[best] = counts.get(best, 0) + 1
        for d in tabs:
            acc[d] += cols[d][best]
    return {m: c / steps for m, c in counts.items()}


def learn_weights(
    rows: pd.DataFrame,
    candidates: list[str],
    segments: tuple[str, ...] | list[str] = (),
    *,
    window_days: list[int] | tuple[int, ...] = (2, 7),
    levels: list[float] | tuple[float, ...] = (0.9, 0.95, 0.97),
    tolerance: float = 0.05,
    power: float = 4.0,
    max_bias: float = 0.10,
    shrink_windows: float = 100.0,
    min_cutoffs: int = 3,
    min_windows: int = 30,
    method: str = "greedy",
    steps: int = 10,
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
    tables = window_tables(rows, cands, window_days)
    if not tables:
        raise ValueError(f"no window of {list(window_days)} days in the learning rows")
    longest = tables[max(tables)]
    levels = list(levels)

    def scored(segment: str | None) -> tuple[pd.Series, pd.Series]:
        res = {m: window_losses(tables, m, levels, segment) for m in cands}
        return pd.Series({m: v[0] for m, v in res.items()}), pd.Series({m: v[1] for m, v in res.items()})

    def rule(sl: pd.Series, sb: pd.Series, segment: str | None) -> dict[str, float]:
        if method == "greedy":
            return _greedy(tables, sl, sb, levels, steps, max_bias, segment)
        return _rule(sl, sb, tolerance, power, max_bias)

    loss, bias = scored(None)
    pooled = rule(loss, bias, None) or {cands[0]: 1.0}
    out: Weights = {"all": pooled}
    if report is not None:
        report["all"] = {"loss": loss.round(5).to_dict(), "bias": bias.round(4).to_dict(),
                         "windows": int(len(longest))}
    for seg in segments:
        sub = longest[longest["segment"] == seg]
        if len(sub) < min_windows or sub["cutoff"].nunique() < min_cutoffs:
            continue
        sl, sb = scored(seg)
        raw = rule(sl, sb, seg)
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
