"""Batch forecasts with the registered champion, written to the forecast cache the planner, API and replay read.

Why re-forecast instead of ``DemandForecaster.predict``: the champion is trained now and then, but the plan runs
every night on one more day of sales. Its fitted LightGBM is applied to the newest feature-store days (mlforecast
``new_df``: lags and rolling means recomputed from the latest data, the trees unchanged); the statistical part of an
``ensemble``/``auto_ets`` champion is cheap and re-estimated on the same data. Dispersion (``alpha`` -> ``dispersion``,
``shared`` -> ``shared_dispersion``) is the champion's, by segment, exactly as trained.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.config import Settings, resolve_path
from forecasting.errors import DataError
from forecasting.source.forecast_cache import write_cache
from training.calibration import WindowCalibration
from training.data import ModelFrame
from training.forecaster import DemandForecaster, active_series, attach_uncertainty, merge_parts
from training.models import LGBMModel, StatsModels, future_frame

NEW_DF_DAYS = 120  # history handed to the fitted trees: the longest lag/rolling feature needs 35 days; EWM decays


@dataclass(frozen=True)
class Champion:
    """The champion forecaster and where it came from (its label names the forecast cache folder)."""

    forecaster: DemandForecaster
    registry_name: str
    version: int
    run_id: str

    @property
    def label(self) -> str:
        return model_label(self.version)


def model_label(version: int | str) -> str:
    """``v<registry version>``: the model_version written into caches, proposals and reports."""
    return f"v{version}"


def load_champion(settings: Settings) -> Champion:
    """The model version holding the ``champion`` alias, unpickled from its pyfunc artifact."""
    import mlflow
    from mlflow import MlflowClient

    from training import tracking

    cfg = settings.training
    tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)
    client = MlflowClient()
    version = tracking.champion_version(client, cfg.registry_name)
    if version is None:
        raise DataError(f"no champion for {cfg.registry_name!r} in {settings.mlflow.tracking_uri}: "
                        "run `replenish train` then `replenish promote`")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlflow.pyfunc.load_model(f"models:/{cfg.registry_name}@{tracking.CHAMPION}")
    forecaster = model.unwrap_python_model().forecaster
    return Champion(forecaster, cfg.registry_name, int(version.version), version.run_id)


def active_ids(frame: ModelFrame, dead_days: int | None = None) -> list[str]:
    """Series with a row on the frame's last day (the ones still on the grid) and, with ``dead_days``, a sale in
    the last ``dead_days`` days (dead items are not forecast)."""
    if dead_days is not None:
        return active_series(frame.df, frame.last_date, dead_days)
    last = frame.df.groupby("unique_id")["ds"].max()
    return last.index[last == frame.last_date].tolist()


def lgbm_forecast_from(model: LGBMModel, frame: ModelFrame, h: int, ids: list[str] | None = None) -> pd.DataFrame:
    """``unique_id, ds, lightgbm``: the fitted trees applied to the newest data of ``frame`` (h days after it)."""
    ids = ids if ids is not None else active_ids(frame)
    days = max(NEW_DF_DAYS, getattr(model, "history_days", 0))  # month lags need months of history
    d = frame.df[frame.df["unique_id"].isin(ids) & (frame.df["ds"] > frame.last_date - pd.Timedelta(days=days))]
    new_df = pd.DataFrame({"unique_id": d["unique_id"].to_numpy(), "ds": d["ds"].to_numpy(),
                           "y": d["y_filled"].to_numpy()})
    for c in [*model.static_, *model.exog_]:
        new_df[c] = d[c].to_numpy()
    fut = future_frame(ModelFrame(d, frame.static, frame.exog, frame.manifest), ids, h)
    out = model.predict(h, fut, new_df=new_df)
    return out[["unique_id", "ds", model.name]]


LgbmPart = Callable[[Any, ModelFrame, int, list[str]], pd.DataFrame]
StatsPart = Callable[[ModelFrame, int, list[str], bool], pd.DataFrame]


def _lgbm_local(model: Any, frame: ModelFrame, h: int, ids: list[str]) -> pd.DataFrame:
    return lgbm_forecast_from(model, frame, h, ids)


def forecast_from(forecaster: DemandForecaster, frame: ModelFrame, h: int | None = None, *,
                  lgbm_part: LgbmPart | None = None, stats_part: StatsPart | None = None) -> pd.DataFrame:
    """The champion's forecast for the ``h`` days after ``frame``'s last day, in the policy's input contract.

    Rows ``store_id, product_id, date, horizon, segment, mean, dispersion, shared_dispersion, q0.5..``: the
    components computed here (the fitted trees on the newest data; the statistical part re-estimated), then the
    forecaster's own ``forecast`` (the one predict path ``train`` registers: blend, sparse rule, retired items,
    launches, uncertainty). ``lgbm_part`` / ``stats_part`` compute the two components (default: in this process);
    the Dask batch passes its distributed versions.
    """
    cfg = forecaster.cfg
    h = h or cfg.horizon
    ids = active_ids(frame, cfg.dead_days)
    if not ids:
        raise DataError(f"no series has data on {frame.last_date.date()}")
    lgbm_part = lgbm_part or _lgbm_local
    if stats_part is None:
        def stats_part(fr: ModelFrame, hh: int, sids: list[str], use_ets: bool) -> pd.DataFrame:
            return StatsModels(7, cfg.ets_model, use_ets).fit(fr).predict(hh, sids)
    lg = lgbm_part(forecaster.lgbm_, frame, h, ids) if forecaster.lgbm_ is not None else None
    month = getattr(forecaster, "lgbm_month_", None)
    lg = merge_parts(lg, _lgbm_local(month, frame, h, ids) if month is not None else None)
    st = stats_part(frame, h, ids, forecaster.stats_.use_ets) if forecaster.stats_ is not None else None
    return contract(forecaster.forecast(frame, h, lg, st, ids), frame.last_date, cfg.quantiles)


def forecast_means(forecaster: DemandForecaster, frame: ModelFrame, h: int | None = None) -> pd.DataFrame:
    """``unique_id, ds, segment, store_id, product_id, mean`` of ``forecast_from`` before the uncertainty: what the
    replay (``planning/simulate.py``) takes from the registered predict path and fits its own dispersion to."""
    out = forecast_from(forecaster, frame, h)
    out = out.rename(columns={"date": "ds"})
    out["unique_id"] = out["store_id"].astype(str) + "_" + out["product_id"].astype(str)
    calib = getattr(forecaster, "calibration", None)
    if calib is not None:  # the replay applies its own calibration: undo the model's level factor
        from training.calibration import factor_arrays

        out["mean"] = out["mean"] / factor_arrays(calib.factors, out["product_id"])[0]
    return out[["unique_id", "ds", "segment", "store_id", "product_id", "mean"]]


def contract(rows: pd.DataFrame, last_date: pd.Timestamp, quantiles: list[float]) -> pd.DataFrame:
    """``forecast`` rows -> the policy's input contract (``date``, ``horizon``, integer keys, sorted)."""
    out = rows.copy()
    out["date"] = pd.to_datetime(out.pop("ds"))
    out["horizon"] = (out["date"] - pd.Timestamp(last_date)).dt.days
    cols = ["store_id", "product_id", "date", "horizon", "segment", "mean", "dispersion", "shared_dispersion",
            *(["store_dispersion"] if "store_dispersion" in out else []), *[f"q{q}" for q in quantiles]]
    out["store_id"] = out["store_id"].astype(int)
    out["product_id"] = out["product_id"].astype(int)
    return out[cols].sort_values(["store_id", "product_id", "date"], ignore_index=True)


def with_uncertainty(
    means: pd.DataFrame, params: dict[str, tuple[float, float]], last_date: pd.Timestamp, quantiles: list[float],
    calibration: WindowCalibration | None = None,
) -> pd.DataFrame:
    """Attach dispersion by segment (``all`` as fallback), horizon and NB quantiles to ``unique_id, ds, mean`` rows.

    With the model's ``calibration`` (``training.calibration``) the means, the shared variance and the store level
    are corrected first, so the quantiles, the cache and every proposal use the calibrated distribution.
    """
    return contract(attach_uncertainty(means, params, quantiles, calibration), last_date, quantiles)


def frame_through(
    settings: Settings, features_dir: str | Path | None, data_date: date | None
) -> tuple[Any, date]:
    """The feature store's model frame cut at ``data_date`` (default: its last day); DataError when it cannot be."""
    from training.pipeline import load_frame

    frame = load_frame(features_dir or settings.features.out_dir, settings.training)
    last = frame.last_date.date()
    day = data_date or last
    if day > last:
        raise DataError(f"the feature store ends on {last}: build features through {day} first")
    sub = frame.until(pd.Timestamp(day))
    if sub.df.empty:
        raise DataError(f"the feature store has no data up to {day}")
    return sub, day


def save_forecasts(settings: Settings, champ: Champion, fc: pd.DataFrame, day: date,
                   forecasts_dir: str | Path | None, t0: float) -> dict[str, Any]:
    """Check the champion's forecasts and write them to the cache (local and Dask paths alike); the run summary."""
    import time

    if not np.isfinite(fc["mean"]).all():
        raise DataError("the champion produced non-finite forecasts")
    root = resolve_path(forecasts_dir or settings.planning.forecasts_dir)
    meta = {"registry_name": champ.registry_name, "registry_version": champ.version, "run_id": champ.run_id,
            "kind": champ.forecaster.kind, "trained_through": str(champ.forecaster.last_date_.date()),
            "horizon": settings.training.horizon, "stores": int(fc["store_id"].nunique()),
            "series": int(fc.groupby(["store_id", "product_id"]).ngroups)}
    path = write_cache(root, fc, champ.label, day, meta)
    return {"model_version": champ.label, "data_date": day.isoformat(), "rows": int(len(fc)), "path": str(path),
            "first_date": str(fc["date"].min().date()), "last_date": str(fc["date"].max().date()),
            "seconds": round(time.perf_counter() - t0, 2), **meta}


def run_batch(
    settings: Settings,
    features_dir: str | Path | None = None,
    forecasts_dir: str | Path | None = None,
    data_date: date | None = None,
    champion: Champion | None = None,
) -> dict[str, Any]:
    """Forecast ``training.horizon`` days after ``data_date`` (default: the feature store's last day) with the
    champion and write the cache; returns a summary (model version, data date, rows, path)."""
    import time

    t0 = time.perf_counter()
    champ = champion or load_champion(settings)
    sub, day = frame_through(settings, features_dir, data_date)
    fc = forecast_from(champ.forecaster, sub, settings.training.horizon)
    return save_forecasts(settings, champ, fc, day, forecasts_dir, t0)
