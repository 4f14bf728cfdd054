"""The backtest's hour-level scores: the final model's daily forecast (as served, after the window calibration) split
over the hours by ``forecasting.inventory.hourly_demand`` fitted on the ``lookback_days`` before each origin, against
the hours sold.

Why here and in this form: the hour-level forecast the API and the thaw and bake plan use is the daily forecast
times the shares, so it is scored exactly so, origin by origin, with shares that never see the scored days. Three
rows per origin:

- ``final``: the shares the service uses now (shrunk hierarchy, tilted by each day's forecast temperature band and
  campaigns when the calendar has them: ``PlannedCalendar.hour_inputs`` as known at the origin);
- ``final_no_covariates``: the same without the day tilts (only when they were fitted): what they add;
- ``final_raw_shares``: the same daily forecast split by each series' own recent shares (what ``/forecast`` served
  before), the baseline the shrinkage has to beat;
- ``oracle``: the generator's expected demand split by its true hourly profile, with the truth's dispersion, when
  the source has them: the floor.

A ``shape_only`` block repeats the split on the oracle's daily mean, so the hour shape's own error is visible
without the daily model's. Scored against observed hourly sales on uncensored days (the generator stores realised
demand per day, not per hour; on a day without a stockout the sales are the demand). WAPE on each row's predictive
median (as the daily scores), the mean's WAPE and bias beside; pinball per unit = the pinball loss summed over the
rows divided by the units sold, averaged over the configured quantiles (pooled, as WAPE: per-series scaling is
undefined for the many hours that never sell).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecasting.config import HourlyConfig
from forecasting.inventory.hourly_demand import HourlyShares, fit_configured, hourly_quantiles, raw_shares
from training.blend import pinball
from training.future import PlannedCalendar

KEYS = ["store_id", "product_id", "ds", "local_hour"]


def score_hourly(df: pd.DataFrame, cols: dict[str, tuple[str, str]], quantiles: list[float]) -> dict[str, dict]:
    """``{name: {wape, wape_mean, bias, pinball_per_unit, n}}`` for hourly rows with ``y`` and, per name, a
    (mean column, dispersion column) pair."""
    y = df["y"].to_numpy(float)
    total = float(y.sum())
    out: dict[str, dict] = {}
    for name, (mcol, acol) in cols.items():
        mu, alpha = df[mcol].to_numpy(float), df[acol].to_numpy(float)
        qv = hourly_quantiles(mu, alpha, sorted({0.5, *quantiles}))
        pin = [float(pinball(y, qv[q], q).sum()) / total for q in quantiles] if total > 0 else [np.nan]
        out[name] = {
            "wape": float(np.abs(qv[0.5] - y).sum() / total) if total > 0 else np.nan,
            "wape_mean": float(np.abs(mu - y).sum() / total) if total > 0 else np.nan,
            "bias": float((mu - y).sum() / total) if total > 0 else np.nan,
            "pinball_per_unit": float(np.mean(pin)),
            "n": int(len(df)),
        }
    return out


def _truth_split(rows: pd.DataFrame, truth_hourly: pd.DataFrame) -> np.ndarray:
    """The true hourly share of each (store, day, hour) row (0 where the truth has none)."""
    t = truth_hourly.rename(columns={"share": "_true_share"})
    m = rows[["store_id", "ds", "local_hour"]].merge(t, on=["store_id", "ds", "local_hour"], how="left")
    return m["_true_share"].fillna(0.0).to_numpy(float)


def origin_rows(preds: pd.DataFrame, panel: pd.DataFrame, cutoff: pd.Timestamp, cfg: HourlyConfig,
                truth_hourly: pd.DataFrame | None, truth_alpha: float | None,
                calendar: PlannedCalendar | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One origin's hourly rows (uncensored days) with each row's means and dispersions, and the fitted shrinkage."""
    hist = panel[(panel["ds"] > cutoff - pd.Timedelta(days=cfg.lookback_days)) & (panel["ds"] <= cutoff)]
    hist = hist.rename(columns={"ds": "date"})
    inputs = calendar.hour_inputs(cutoff.date()) if calendar is not None else None
    learned: HourlyShares = fit_configured(hist, cfg, inputs)
    plain = fit_configured(hist, cfg) if learned.tilts is not None else None
    raw = raw_shares(hist)
    alpha_col = "final_alpha_served" if "final_alpha_served" in preds else "final_alpha"
    truth_col = "oracle_mean" if "oracle_mean" in preds else "oracle" if "oracle" in preds else None
    cols = ["store_id", "product_id", "ds", "final", alpha_col] + ([truth_col] if truth_col else [])
    day = preds.loc[(preds["cutoff"] == cutoff) & ~preds["censored"].astype(bool), cols]
    day = day.rename(columns={alpha_col: "alpha", **({truth_col: "oracle_mean"} if truth_col else {})})
    day = day.assign(final_day=lambda d: d["final"])
    out = learned.split(day, "final")
    dows = out["ds"].dt.dayofweek.to_numpy()
    raw_tab = raw.share_table(out["store_id"].to_numpy(), out["product_id"].to_numpy(), dows)
    hours = out["local_hour"].to_numpy(int)
    raw_share = raw_tab[np.arange(len(out)), hours]
    out["final_raw_shares"] = out["final_day"].to_numpy(float) * raw_share
    if plain is not None:
        plain_share = plain.share_table(out["store_id"].to_numpy(), out["product_id"].to_numpy(), dows)
        out["final_no_covariates"] = out["final_day"].to_numpy(float) * plain_share[np.arange(len(out)), hours]
    if "oracle_mean" in out:
        out["oracle_day_learned"] = out["oracle_mean"].to_numpy(float) * out["share"].to_numpy(float)
        out["oracle_day_raw"] = out["oracle_mean"].to_numpy(float) * raw_share
        if truth_hourly is not None and len(truth_hourly):
            true_share = _truth_split(out, truth_hourly)
            out["oracle"] = out["oracle_mean"].to_numpy(float) * true_share
        out["truth_alpha"] = float(truth_alpha) if truth_alpha is not None else out["alpha"]
    obs = panel[(panel["ds"] > cutoff) & (panel["ds"] <= out["ds"].max())][[*KEYS, "qty"]] if len(out) else panel[:0]
    out = out.merge(obs, on=KEYS, how="left").rename(columns={"qty": "y"})
    out["y"] = out["y"].fillna(0.0)
    return out, {"kappa": learned.kappa}


def hourly_backtest(preds: pd.DataFrame, panel: pd.DataFrame, cfg: HourlyConfig, quantiles: list[float],
                    truth_hourly: pd.DataFrame | None = None, truth_alpha: float | None = None,
                    calendar: PlannedCalendar | None = None) -> dict[str, Any]:
    """Hour-level scores over every origin of a backtest (``preds``: its rows, ``final`` as served); see the module
    docstring. ``panel``: the feature store's hourly panel (``store_id, product_id, date, local_hour, qty,
    censored``) from ``lookback_days`` before the first origin; ``truth_hourly``: ``store_id, date, local_hour,
    share``; ``calendar``: the planned calendar the day covariates come from (None: no tilts)."""
    panel = panel.rename(columns={"date": "ds"}).assign(ds=lambda d: pd.to_datetime(d["ds"]))
    th = None
    if truth_hourly is not None and len(truth_hourly):
        th = truth_hourly.rename(columns={"date": "ds"}).assign(ds=lambda d: pd.to_datetime(d["ds"]))
    parts, kappas = [], {}
    for c in sorted(preds["cutoff"].unique()):
        rows, info = origin_rows(preds, panel, pd.Timestamp(c), cfg, th, truth_alpha, calendar)
        parts.append(rows)
        kappas[str(pd.Timestamp(c).date())] = info["kappa"]
    rows = pd.concat(parts, ignore_index=True)
    models = {"final": ("final", "alpha"), "final_raw_shares": ("final_raw_shares", "alpha")}
    if "final_no_covariates" in rows:
        rows["final_no_covariates"] = rows["final_no_covariates"].fillna(rows["final"])  # origins without tilts
        models["final_no_covariates"] = ("final_no_covariates", "alpha")
    if "oracle" in rows:
        models["oracle"] = ("oracle", "truth_alpha")
    res: dict[str, Any] = {
        "scored_against": "observed hourly sales on uncensored days",
        "rows": int(len(rows)),
        "units": float(rows["y"].sum()),
        "models": score_hourly(rows, models, quantiles),
        "kappa_by_origin": kappas,
        "shares": "store x product x weekday, shrunk towards the store's and the product's "
                  "(forecasting.inventory.hourly_demand), tilted by the day's temperature band and campaigns "
                  "where the calendar has them",
    }
    if "oracle_day_learned" in rows and "oracle" in rows:
        res["shape_only"] = {
            "note": "the oracle's daily mean split by each set of shares: the hour shape's own error",
            "models": score_hourly(rows, {"learned_shares": ("oracle_day_learned", "truth_alpha"),
                                          "raw_shares": ("oracle_day_raw", "truth_alpha"),
                                          "true_shares": ("oracle", "truth_alpha")}, quantiles),
        }
    by_hour = rows.assign(e=(rows["final"] - rows["y"]).abs()).groupby("local_hour")[["e", "y"]].sum()
    res["final_wape_mean_by_hour"] = {str(int(h)): float(v.e / v.y) if v.y > 0 else None
                                      for h, v in by_hour.iterrows()}
    return res
