"""Import the champion from the MLflow registry into the BentoML model store, with its newest forecast cache.

Why: ``bentoml build`` packs models from the BentoML store into the Bento, so a Bento built after an import runs
without the MLflow registry or the forecast folder (``serving.model_source: bentoml``, or ``auto`` when no registry
answers). The BentoML model is tagged ``<serving.bentoml_model>:v<registry version>`` and holds the MLflow model
files (``mlflow_model/``) and the cache (``forecasts/<label>/<data date>/``), labelled with where they came from.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from forecasting.config import Settings
from forecasting.errors import DataError
from forecasting.source.forecast_cache import cache_dir
from serving.lifecycle import CACHE_DIR, MLMODEL_DIR, cache_root, model_label, newest_data_date


def import_champion(settings: Settings, version: int | None = None, force: bool = False) -> dict:
    """Copy registry version ``version`` (default: the champion) and its newest cache into the BentoML store."""
    import bentoml
    import mlflow
    from bentoml.exceptions import NotFound
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.tracking import CHAMPION, resolve_tracking_uri

    uri, _ = resolve_tracking_uri(settings.mlflow.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = settings.training.registry_name
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        mv = client.get_model_version(name, str(version)) if version else client.get_model_version_by_alias(
            name, CHAMPION)
    except MlflowException:
        what = f"version {version}" if version else f"a {CHAMPION!r} alias"
        raise DataError(f"registered model {name!r} has no {what}: run `replenish train` / `promote`") from None
    label = model_label(mv.version)
    root = cache_root(settings)
    day = newest_data_date(root, label)
    if day is None:
        raise DataError(f"no cached forecasts for {label} under {root}: run `replenish forecast` first")
    tag = f"{settings.serving.bentoml_model}:{label}"
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        existing = None
    if existing is not None:
        if not force:
            return {"tag": str(existing.tag), "model_version": label, "imported": False,
                    "reason": "already in the BentoML store (use --force to replace it)"}
        bentoml.models.delete(tag)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp)
        meta = {"model_version": label, "registry_name": name, "registry_version": str(mv.version),
                "run_id": mv.run_id, "data_date": day.isoformat()}
        with bentoml.models.create(tag, labels={"source": "mlflow", "registry_version": str(mv.version)},
                                   metadata=meta) as bm:
            shutil.copytree(local, Path(bm.path) / MLMODEL_DIR)
            src = cache_dir(root, label, day)
            shutil.copytree(src, cache_dir(Path(bm.path) / CACHE_DIR, label, day))
    return {"tag": tag, "model_version": label, "data_date": day.isoformat(), "imported": True, "path": bm.path}
