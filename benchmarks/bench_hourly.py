"""Benchmark the hour-level model (``forecasting.inventory.hourly_demand``): fit time, split time, and how close
its shapes come to the generator's true hourly profile, against the raw shares ``/forecast`` served before.

Uses a generated history's feature store and source (``--features``, ``--db``; default: the project's data/).
For each weekly origin in the last ``--origins`` weeks it fits the shares on the ``lookback_days`` before the origin
(the shrinkage chosen on the last ``holdout_days`` of them), splits every store x product x day of the next 7 days,
and compares each day's shape with the truth's (``t_demand_truth_hourly``: the store's profile that day) by the L1
distance of the shares (0 = the true shape, 2 = disjoint), weighted by the day's expected units, and scores the
next 7 days' observed hourly sales (uncensored days) by the multinomial log-likelihood per unit. The model is fitted
with and without the day covariates (forecast temperature band, campaigns: ``PlannedCalendar.hour_inputs`` as
known at the origin), so the tilts' effect is measured on the same origins. Writes ``benchmarks/results/hourly.json``
(``--out``). Target (issue 16): fitting and scoring the hour level stays inside the 5-minute
train budget, i.e. seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _observed(panel: pd.DataFrame, days: pd.DataFrame) -> np.ndarray:
    """(n, 24) observed hourly sales of each store x product x day row of ``days`` (zeros on censored days: a day
    that sold out early is no sample of the day's shape)."""
    p = panel[~panel["censored"].astype(bool)]
    p = p[(p["date"] >= days["date"].min()) & (p["date"] <= days["date"].max())]
    idx = pd.MultiIndex.from_frame(days[["store_id", "product_id", "date"]])
    pos = idx.get_indexer(pd.MultiIndex.from_frame(p[["store_id", "product_id", "date"]]))
    out = np.zeros((len(days), 24))
    ok = pos >= 0
    np.add.at(out, (pos[ok], p["local_hour"].to_numpy(int)[ok]), p["qty"].to_numpy(float)[ok])
    return out


def main() -> int:
    from sqlalchemy import select

    from features.store import FeatureStore
    from forecasting.config import load_settings, resolve_path
    from forecasting.inventory.hourly_demand import fit_configured, raw_shares
    from forecasting.source.db import open_source
    from training.future import PlannedCalendar

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", help="feature store (default: features.out_dir)")
    ap.add_argument("--db", help="source URL with the generator's truth (default: source.url)")
    ap.add_argument("--origins", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hourly.json"))
    a = ap.parse_args()
    s = load_settings()
    cfg = s.training.hourly
    fs = FeatureStore(resolve_path(a.features or s.features.out_dir))
    if not fs.exists():
        print("no feature store: run `replenish seed && replenish features build` first", file=sys.stderr)
        return 2
    last = pd.Timestamp(fs.manifest().get("watermark") or fs.manifest().get("last_date"))
    first = last - pd.Timedelta(days=7 * a.origins + cfg.lookback_days)
    panel = fs.read("hourly", start=first.date(), end=last.date(),
                    columns=["store_id", "product_id", "date", "local_hour", "qty", "censored"])
    panel["date"] = pd.to_datetime(panel["date"])
    engine, schema = open_source(a.db or s.source.url, s.source.tables, s.source.connect_timeout_s, readonly=True)
    with engine.connect() as conn:
        t, d = schema["demand_truth_hourly"], schema["demand_truth"]
        th = pd.read_sql(select(t).where(t.c.date > first.date()), conn)
        td = pd.read_sql(select(d.c.store_id, d.c.product_id, d.c.date, d.c.expected_qty)
                         .where(d.c.date > first.date()), conn)
    engine.dispose()
    th["date"], td["date"] = pd.to_datetime(th["date"]), pd.to_datetime(td["date"])
    true = {(int(s_), dt): np.bincount(g["local_hour"], g["share"], minlength=24)
            for (s_, dt), g in th.groupby(["store_id", "date"])}
    calendar = PlannedCalendar.from_manifest(fs.manifest())
    rows, fit_s, fit0_s, split_s = [], [], [], []
    for k in range(a.origins, 0, -1):
        cut = last - pd.Timedelta(days=7 * k)
        hist = panel[(panel["date"] > cut - pd.Timedelta(days=cfg.lookback_days)) & (panel["date"] <= cut)]
        t0 = time.perf_counter()
        learned = fit_configured(hist, cfg, calendar.hour_inputs(cut.date()))
        fit_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain = fit_configured(hist, cfg)
        fit0_s.append(time.perf_counter() - t0)
        raw = raw_shares(hist)
        days = td[(td["date"] > cut) & (td["date"] <= cut + pd.Timedelta(days=7))]
        t0 = time.perf_counter()
        dows = days["date"].dt.dayofweek.to_numpy()
        keys = (days["store_id"].to_numpy(), days["product_id"].to_numpy(), dows)
        cov = learned.inputs.rows(days["product_id"], days["date"]) if learned.inputs is not None else (None, None)
        lt = learned.share_table(*keys, *cov)
        split_s.append(time.perf_counter() - t0)
        pt = plain.share_table(*keys)
        rt = raw.share_table(*keys)
        tt = np.stack([true.get((int(s_), dt), np.zeros(24)) for s_, dt in
                       zip(days["store_id"], days["date"], strict=True)])
        w = days["expected_qty"].to_numpy(float)
        obs = _observed(panel, days)
        ok = obs.sum(1) > 0
        units = float(obs[ok].sum())

        def l1(tab: np.ndarray, w: np.ndarray = w, tt: np.ndarray = tt) -> float:
            return float((np.abs(tab - tt).sum(1) * w).sum() / w.sum())

        def ll(tab: np.ndarray, obs: np.ndarray = obs, units: float = units) -> float:
            m = obs > 0
            return float((obs[m] * np.log(np.maximum(tab[m], 1e-9))).sum() / units)

        tilted = learned.tilts is not None
        rows.append({"origin": str(cut.date()), "series_days": int(len(days)), "kappa": learned.kappa,
                     "tilts": {"temperature": tilted and learned.tilts.temp_chain is not None,
                               "campaign": tilted and learned.tilts.camp_chain is not None},
                     "l1_learned": l1(lt), "l1_no_covariates": l1(pt), "l1_raw": l1(rt),
                     "loglik_per_unit": ll(lt), "loglik_per_unit_no_covariates": ll(pt),
                     "loglik_per_unit_raw": ll(rt), "units_scored": units})
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    out = {"origins": rows, "fit_s_mean": float(np.mean(fit_s)), "fit_s_mean_no_covariates": float(np.mean(fit0_s)),
           "split_s_mean": float(np.mean(split_s)),
           **{key: mean(key) for key in ("l1_learned", "l1_no_covariates", "l1_raw", "loglik_per_unit",
                                         "loglik_per_unit_no_covariates", "loglik_per_unit_raw")},
           "covariates": {"temperature": bool(len(calendar.temperature)), "campaigns": int(len(calendar.campaigns))},
           "lookback_days": cfg.lookback_days, "holdout_days": cfg.holdout_days, "temp_band_c": cfg.temp_band_c}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"hourly shares: fit {out['fit_s_mean']:.2f} s ({out['fit_s_mean_no_covariates']:.2f} s without covariates), "
          f"split {out['split_s_mean']:.3f} s per origin; L1 to the true profile {out['l1_learned']:.4f} (without "
          f"covariates {out['l1_no_covariates']:.4f}, raw shares {out['l1_raw']:.4f}); held-out log-likelihood per "
          f"unit {out['loglik_per_unit']:.5f} (without {out['loglik_per_unit_no_covariates']:.5f}, raw "
          f"{out['loglik_per_unit_raw']:.5f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
