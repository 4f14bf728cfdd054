"""Batch forecasts of one model version for one data date, cached as Parquet so requests only apply the policy.

Why a cache: the ordering system calls for every store every day; forecasting is the slow part and changes only
when the data date or the champion changes, so the nightly job computes it once per (model version, data date)
and the planner's report, the API and the simulation all read the same numbers.

Layout: ``<root>/<model_version>/<data_date>/forecasts.parquet`` plus ``meta.json``; written to a temporary
folder and renamed into place, so a reader never sees half a cache.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from forecasting.errors import DataError

# Columns every cache holds; quantile columns ``q0.5`` .. ``q0.99`` may follow.
REQUIRED = ("store_id", "product_id", "date", "horizon", "mean", "dispersion", "shared_dispersion")


@dataclass(frozen=True)
class CachedForecast:
    """One cached batch: the frame (policy input contract) and where it came from."""

    frame: pd.DataFrame
    model_version: str
    data_date: date
    meta: dict

    @property
    def dates(self) -> tuple[date, date]:
        d = pd.to_datetime(self.frame["date"])
        return d.min().date(), d.max().date()


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(part))


def cache_dir(root: str | Path, model_version: str, data_date: date) -> Path:
    return Path(root) / _safe(model_version) / data_date.isoformat()


def write_cache(
    root: str | Path, frame: pd.DataFrame, model_version: str, data_date: date, meta: dict | None = None
) -> Path:
    """Atomically write (or replace) the cache for ``(model_version, data_date)``."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(f"forecast frame lacks columns {missing}")
    target = cache_dir(root, model_version, data_date)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        out = frame.copy()
        out["date"] = pd.to_datetime(out["date"]).dt.date
        out.to_parquet(tmp / "forecasts.parquet", index=False)
        info = {
            **(meta or {}),
            "model_version": model_version,
            "data_date": data_date.isoformat(),
            "rows": int(len(out)),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / "meta.json").write_text(json.dumps(info, indent=2, default=str))
        if target.exists():
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_cache(root: str | Path, model_version: str, data_date: date) -> CachedForecast:
    d = cache_dir(root, model_version, data_date)
    if not (d / "forecasts.parquet").is_file():
        raise DataError(f"no cached forecasts for model {model_version} and data date {data_date} under {root}")
    frame = pd.read_parquet(d / "forecasts.parquet")
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    meta = json.loads((d / "meta.json").read_text())
    return CachedForecast(frame, model_version, data_date, meta)


def latest(root: str | Path, model_version: str | None = None) -> CachedForecast:
    """The newest data date cached (for one model version, or any); DataError when nothing is cached."""
    base = Path(root)
    versions = [base / _safe(model_version)] if model_version else [p for p in base.glob("*") if p.is_dir()]
    found: list[tuple[str, float, Path]] = []
    for v in versions:
        for d in v.glob("*/meta.json"):
            found.append((d.parent.name, d.stat().st_mtime, d.parent))
    if not found:
        what = f"model {model_version}" if model_version else "any model"
        raise DataError(f"no cached forecasts for {what} under {root}: run `replenish forecast` or `nightly` first")
    _, _, path = max(found)
    meta = json.loads((path / "meta.json").read_text())
    return read_cache(root, meta["model_version"], date.fromisoformat(meta["data_date"]))
