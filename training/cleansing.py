"""Demand-history cleansing: abnormal store-days taken out of what the global models learn from.

Why: a closure, a slump or a storm is one day (or one week) of the history, but every lag and rolling mean that
reaches back over it carries it for four more weeks. Measured on the generated history at the 2026-01-01 cutoff,
LightGBM's store totals were 0.83 x the truth for the two weeks after the year-end slump (Dec 26-31, which no
calendar announces): the model read those weeks' depressed lags as a lower level. Supply-planning systems cleanse
demand history of such events before forecasting for this reason.

How (``day_factors``): a store-day's total over its products is compared with the median of the same weekday one
to four weeks before and after (abnormal days and calendar holidays masked, then again). A day is abnormal chain-wide
when the chain's total departs from its expectation by more than ``max(chain_floor, z x the chain's robust
spread)``; a single store-day is abnormal when its own total departs by more than ``max(store_floor, z x that
store's robust spread)``. On abnormal store-days every product's units are divided by the store's ratio (the day's
product mix is kept); a closed store-day (ratio below ``CLOSED``) takes the series' same-weekday median instead.
Nothing is flagged that the robust spread calls ordinary, so a log without events is left as it is.

Calendar holidays (the frame's ``is_holiday``) are left as sold: they are known in advance, so the trees learn
their effect from the flag. Cleansing them and putting a pooled holiday factor back was tried and lost on every
holiday of the tuning periods: one year of history holds each holiday once, and their effects run from closed to
barely felt (docs/experiments.md, session 9).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from forecasting.config import CleansingConfig, TrainingConfig

CLOSED = 0.05  # a store-day total below this share of its expectation: the store was closed
MAD_SD = 1.4826  # median absolute deviation -> standard deviation for a normal


def rule_from(cfg: TrainingConfig) -> CleansingConfig | None:
    """The ``training.cleansing`` section the global models apply (None when it is off)."""
    return cfg.cleansing if cfg.cleansing.enabled else None


def _same_weekday_median(wide: np.ndarray, weeks: int) -> np.ndarray:
    """Per cell of ``wide`` (rows x days), the median of the same column +-7k days (k = 1..weeks), NaN-aware,
    needing at least two values."""
    n = wide.shape[1]
    stack = np.full((2 * weeks, *wide.shape), np.nan)
    for i, k in enumerate([*range(1, weeks + 1), *range(-weeks, 0)]):
        s = 7 * k
        if 0 < s < n:
            stack[i][:, s:] = wide[:, :-s]
        elif 0 < -s < n:
            stack[i][:, :s] = wide[:, -s:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: no expectation
        med = np.nanmedian(stack, axis=0)
    return np.where(np.isfinite(stack).sum(axis=0) >= 2, med, np.nan)


def _robust_threshold(logr: np.ndarray, floor: float, z: float) -> float:
    x = logr[np.isfinite(logr)]
    if len(x) < 14:
        return np.inf  # too little history to tell an event from noise
    sd = MAD_SD * float(np.median(np.abs(x - np.median(x))))
    return max(floor, z * sd)


def day_factors(df: pd.DataFrame, rule: CleansingConfig | None = None, y: str = "y",
                thresholds: dict | None = None) -> pd.DataFrame:
    """``store_id, ds, ratio, flagged, holiday`` per store-day of ``df`` (``store_id, ds, <y>`` [+ ``is_holiday``]).

    ``ratio``: the store-day's total over its same-weekday expectation (1 where the day is not flagged or no
    expectation exists). The thresholds used are in ``out.attrs["thresholds"]`` (``chain``, ``stores``); pass them
    back as ``thresholds`` to cleanse newer history exactly as the fitted model's (a store they lack gets its own)."""
    rule = rule or CleansingConfig()
    tot = df.groupby(["store_id", "ds"], sort=True)[y].sum()
    wide = tot.unstack("ds")
    days = pd.date_range(wide.columns.min(), wide.columns.max(), freq="D")
    wide = wide.reindex(columns=days)
    L = wide.to_numpy(float)
    hol = np.zeros(len(days), dtype=bool)
    if "is_holiday" in df:
        h = df.groupby("ds")["is_holiday"].max().reindex(days).fillna(0).to_numpy(float)
        hol = h > 0
    keep = hol.copy()
    for k in range(1, rule.holiday_days_around + 1):
        keep[k:] |= hol[:-k]
        keep[:-k] |= hol[k:]
    normal = ~hol
    given = thresholds or {}
    known = given.get("stores", {})
    mask = np.zeros(L.shape, dtype=bool)
    for _ in range(2):  # expectations from normal days only (holidays never count), the second time round
        E = _same_weekday_median(np.where(mask | hol[None, :], np.nan, L), rule.weeks)
        both = np.isfinite(L) & np.isfinite(E)
        with np.errstate(all="ignore"):
            C = np.where(both, L, 0.0).sum(axis=0)
            EC = np.where(both, E, 0.0).sum(axis=0)
            lc = np.where(EC > 0, np.log(np.maximum(C, 1e-9) / EC), np.nan)
            ls = np.where(both & (E > 0), np.log(np.maximum(L, 1e-9) / np.where(E > 0, E, 1.0)), np.nan)
        tc = given["chain"] if "chain" in given else _robust_threshold(lc[normal], rule.chain_floor, rule.z)
        chain_day = np.abs(np.nan_to_num(lc, nan=0.0)) > tc
        ts = np.array([known[s] if s in known else _robust_threshold(r[normal], rule.store_floor, rule.z)
                       for s, r in zip(wide.index, ls, strict=True)])[:, None]
        mask = (chain_day[None, :] | (np.abs(np.nan_to_num(ls, nan=0.0)) > ts)) & np.isfinite(ls) & ~keep[None, :]
    ratio = np.where(mask, np.exp(np.nan_to_num(ls, nan=0.0)), 1.0)
    out = pd.DataFrame({
        "store_id": np.repeat(wide.index.to_numpy(), len(days)),
        "ds": np.tile(days.to_numpy(), len(wide.index)),
        "ratio": ratio.ravel(),
        "flagged": mask.ravel(),
        "holiday": np.tile(hol, len(wide.index)),
    })
    out = out[np.isfinite(L).ravel()].reset_index(drop=True)
    stores = {s: float(t) for s, t in zip(wide.index, ts[:, 0], strict=True)}
    out.attrs["thresholds"] = {"chain": float(tc), "stores": stores}
    return out


def cleanse(df: pd.DataFrame, factors: pd.DataFrame, rule: CleansingConfig | None = None,
            y: str = "y") -> np.ndarray:
    """``df[y]`` with abnormal store-days divided by their store's ratio (closed ones: the series' same-weekday
    median)."""
    rule = rule or CleansingConfig()
    r = df[["store_id", "ds"]].merge(factors[["store_id", "ds", "ratio"]], on=["store_id", "ds"], how="left")
    ratio = r["ratio"].fillna(1.0).to_numpy(float)
    vals = df[y].to_numpy(float).copy()
    open_ = ratio >= CLOSED
    vals[open_] = vals[open_] / ratio[open_]
    if (~open_).any():
        wide = df.pivot_table(index="unique_id", columns="ds", values=y, aggfunc="sum")
        days = pd.date_range(wide.columns.min(), wide.columns.max(), freq="D")
        wide = wide.reindex(columns=days)
        closed_days = set(r.loc[~open_, "ds"])
        masked = wide.copy()
        masked.loc[:, [d for d in days if d in closed_days]] = np.nan
        med = pd.DataFrame(_same_weekday_median(masked.to_numpy(float), rule.weeks), index=wide.index, columns=days)
        at = med.stack(future_stack=True)
        idx = pd.MultiIndex.from_arrays([df.loc[~open_, "unique_id"].to_numpy(), df.loc[~open_, "ds"].to_numpy()])
        fill = at.reindex(idx).to_numpy(float)
        vals[~open_] = np.where(np.isfinite(fill), fill, vals[~open_])
    return vals
