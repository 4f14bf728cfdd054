"""Benchmark the hour-level model (``forecasting.inventory.hourly_demand``): fit time, split time, and how close
its shapes come to the generator's true hourly profile, against the raw shares ``/forecast`` served before.

Uses a generated history's feature store and source (``--features``, ``--db``; default: the project's data/).
For each weekly origin in the last ``--origins`` weeks it fits the shares on the ``lookback_days`` before the origin
(the shrinkage chosen on the last ``holdout_days`` of them), splits every store x product x day of the next 7 days,
and compares each day's shape with the truth's (``t_demand_truth_hourly``: the store's profile that day) by the L1
distance of the shares (0 = the true shape, 2 = disjoint), weighted by the day's expected units. Writes
``benchmarks/results/hourly.json``. Target (issue 16): fitting and scoring the hour level stays inside the 5-minute
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


def main() -> int:
    from sqlalchemy import select

    from features.store import FeatureStore
    from forecasting.config import load_settings, resolve_path
    from forecasting.inventory.hourly_demand import fit_hourly_shares, raw_shares
    from forecasting.source.db import open_source

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
    rows, fit_s, split_s = [], [], []
    for k in range(a.origins, 0, -1):
        cut = last - pd.Timedelta(days=7 * k)
        hist = panel[(panel["date"] > cut - pd.Timedelta(days=cfg.lookback_days)) & (panel["date"] <= cut)]
        t0 = time.perf_counter()
        learned = fit_hourly_shares(hist, cfg.holdout_days)
        fit_s.append(time.perf_counter() - t0)
        raw = raw_shares(hist)
        days = td[(td["date"] > cut) & (td["date"] <= cut + pd.Timedelta(days=7))]
        t0 = time.perf_counter()
        dows = days["date"].dt.dayofweek.to_numpy()
        lt = learned.share_table(days["store_id"].to_numpy(), days["product_id"].to_numpy(), dows)
        split_s.append(time.perf_counter() - t0)
        rt = raw.share_table(days["store_id"].to_numpy(), days["product_id"].to_numpy(), dows)
        tt = np.stack([true.get((int(s_), dt), np.zeros(24)) for s_, dt in
                       zip(days["store_id"], days["date"], strict=True)])
        w = days["expected_qty"].to_numpy(float)
        rows.append({"origin": str(cut.date()), "series_days": int(len(days)), "kappa": learned.kappa,
                     "l1_learned": float((np.abs(lt - tt).sum(1) * w).sum() / w.sum()),
                     "l1_raw": float((np.abs(rt - tt).sum(1) * w).sum() / w.sum())})
    out = {"origins": rows, "fit_s_mean": float(np.mean(fit_s)), "split_s_mean": float(np.mean(split_s)),
           "l1_learned": float(np.mean([r["l1_learned"] for r in rows])),
           "l1_raw": float(np.mean([r["l1_raw"] for r in rows])),
           "lookback_days": cfg.lookback_days, "holdout_days": cfg.holdout_days}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"hourly shares: fit {out['fit_s_mean']:.2f} s, split {out['split_s_mean']:.3f} s per origin; "
          f"L1 to the true profile {out['l1_learned']:.3f} (raw shares {out['l1_raw']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
