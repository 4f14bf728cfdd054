"""``replenish nightly``: incremental features, batch forecasts with the champion, the plan and its write-back.

Why one command: the scheduler runs one job per night and re-runs it after any failure. Every step is idempotent
for a date (the feature job extends from its watermark and re-reads the last days, the forecast cache is replaced
atomically per (model version, data date), the proposal is replaced per (date, store) in one transaction), so a
re-run gives the same result; a failing store is reported and the others are planned.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from forecasting.config import Settings, resolve_path
from forecasting.source.schema import SourceSchema


def run_nightly(
    settings: Settings,
    engine: Engine,
    schema: SourceSchema,
    order_date: date,
    *,
    features_dir: str | Path | None = None,
    forecasts_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress=None,
) -> dict[str, Any]:
    """Features through the day before ``order_date``, forecasts from that day, the plan for ``order_date``."""
    from features.job import build_features
    from planning.plan import run_plan
    from training.batch import run_batch

    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    data_date = order_date - timedelta(days=1)
    fdir = resolve_path(features_dir or settings.features.out_dir)
    manifest = fdir / "manifest.json"
    mark = json.loads(manifest.read_text()).get("watermark") if manifest.is_file() else None
    if mark and date.fromisoformat(mark) > data_date:  # re-running an older date: never truncate newer features
        feats = {"mode": "skipped (store is newer)", "window": None, "watermark": mark, "seconds": 0.0}
    else:
        say(f"features through {data_date}")
        feats = build_features(engine, schema, str(fdir), until=data_date, config=settings.features)
    say(f"forecasts from {data_date} with the champion")
    fc = run_batch(settings, fdir, forecasts_dir, data_date)
    say(f"plan for {order_date}")
    plan = run_plan(settings, engine, schema, order_date, forecasts_dir=forecasts_dir, features_dir=fdir,
                    out_dir=out_dir, progress=say)
    return {
        "order_date": order_date.isoformat(),
        "features": {k: feats[k] for k in ("mode", "window", "watermark", "seconds")},
        "forecast": {k: fc[k] for k in ("model_version", "data_date", "rows", "path", "seconds")},
        "plan": plan.summary(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
