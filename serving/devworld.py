"""A small, complete serving world in one folder, for tests and benchmarks: source, features, champion, forecasts.

Why real stages: the API must be tested against what production feeds it (the generator's small scenario in SQLite,
the feature store, a LightGBM champion registered in a local MLflow store, the batch job's forecast cache), not
against hand-made frames; a tiny training configuration keeps the whole build near half a minute.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from forecasting.config import load_settings
from forecasting.source.forecast_cache import read_cache, write_cache
from serving.lifecycle import model_label


def write_config(root: Path, **serving) -> Path:
    """``root/config.yaml``: the world's paths plus ``serving`` overrides (pass it as REPLENISH_CONFIG)."""
    cfg = {
        "source": {"url": f"sqlite:///{root / 'source.db'}"},
        "mlflow": {"tracking_uri": str(root / "mlruns")},
        "features": {"out_dir": str(root / "features")},
        "planning": {"forecasts_dir": str(root / "forecasts")},
        "training": {"origins": 1, "num_threads": 1, "tuned_params": None, "run_ets": False, "final": "lightgbm",
                     "lgbm": {"n_estimators": 30, "num_leaves": 15}},
        "replenishment": {"n_samples": 400},  # a faster load (the per-request cost does not depend on it)
        "serving": {"poll_interval_s": 1.0, **serving},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def build(root: str | Path, scenario: str = "configs/scenarios/small.yaml", progress=print) -> dict:
    """Seed, build features, train + register + promote the champion, write its forecast cache. Returns a summary."""
    from forecasting.source.db import open_source
    from generator.api import generate

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_config(root)
    s = load_settings(root / "config.yaml", environ={})
    t0 = time.perf_counter()
    engine, schema = open_source(s.source.url, s.source.tables)
    generate(engine, schema, scenario, s.generator.seed)
    from features.job import build_features

    build_features(engine, schema, s.features.out_dir, config=s.features)
    engine.dispose()
    progress(f"world: source and features in {time.perf_counter() - t0:.1f} s")
    import mlflow

    from training import tracking
    from training.forecaster import DemandForecaster
    from training.pipeline import load_frame

    # The final fit only (no backtest): the API needs a registered champion, not evidence that it is good.
    frame = load_frame(s.features.out_dir, s.training)
    model = DemandForecaster(s.training, "lightgbm", s.training.lgbm, {"all": (0.3, 0.05)}).fit(frame)
    tracking.setup(s.mlflow.tracking_uri, s.training.experiment)
    with mlflow.start_run(run_name="serving-world"):
        info, _, _ = tracking.log_forecaster(model, s.training.registry_name)
    promote_alias(root, info.registered_model_version)
    from training.batch import run_batch

    batch = run_batch(s)
    progress(f"world: champion {batch['model_version']} and forecasts in {time.perf_counter() - t0:.1f} s")
    return {"root": str(root), "config": str(root / "config.yaml"), "model_version": batch["model_version"],
            "data_date": batch["data_date"], "forecaster": model}


def register_copy(root: str | Path, forecaster, scale: float | None = 1.0, promote: bool = True) -> str:
    """Register ``forecaster`` again as a new version (optionally promoted); when ``scale`` is set, write its cache
    as the current champion's forecasts times ``scale``. Returns the new model label (e.g. ``v2``)."""
    import mlflow

    from training import tracking

    root = Path(root)
    s = load_settings(root / "config.yaml", environ={})
    tracking.setup(s.mlflow.tracking_uri, s.training.experiment)
    with mlflow.start_run(run_name="serving-test"):
        info, _, _ = tracking.log_forecaster(forecaster, s.training.registry_name)
    version = str(info.registered_model_version)
    label = model_label(version)
    if scale is not None:
        from forecasting.source.forecast_cache import latest

        cur = latest(s.planning.forecasts_dir, model_label(1))
        frame = cur.frame.copy()
        frame["mean"] = frame["mean"] * scale
        write_cache(s.planning.forecasts_dir, frame, label, cur.data_date, {"note": "serving test copy"})
    if promote:
        promote_alias(root, version)
    return label


def promote_alias(root: str | Path, version: str | int) -> None:
    from mlflow import MlflowClient

    from training import tracking

    s = load_settings(Path(root) / "config.yaml", environ={})
    tracking.setup(s.mlflow.tracking_uri, s.training.experiment)
    MlflowClient().set_registered_model_alias(s.training.registry_name, tracking.CHAMPION, str(version))


def cached_frame(root: str | Path, label: str, data_date):
    s = load_settings(Path(root) / "config.yaml", environ={})
    return read_cache(s.planning.forecasts_dir, label, data_date).frame
