"""The tracking code paths work against a real MLflow server backed by PostgreSQL (not only the local store).

The second test runs the project's own train -> register -> promote -> load cycle (``training.pipeline``) on a
generated small-scenario world, with the tracking URI pointed at the server through the same environment override
an operator would use (``REPLENISH__MLFLOW__TRACKING_URI``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from test_plan_world import small_world as shared_small_world

from forecasting.config import Settings, load_settings
from training.data import ModelFrame
from training.source import EvalSources


def _reset_mlflow() -> None:
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.mark.slow
def test_server_roundtrip_params_registry_alias(mlflow_server: str, tmp_path: Path) -> None:
    mlflow.set_tracking_uri(mlflow_server)
    try:
        mlflow.set_experiment("server-smoke")
        with mlflow.start_run() as run:
            mlflow.log_param("alpha", 0.5)
            mlflow.log_metric("wape", 0.31)
            (tmp_path / "manifest.json").write_text('{"rows": 1}')
            mlflow.log_artifact(str(tmp_path / "manifest.json"))
        client = MlflowClient(mlflow_server)
        got = client.get_run(run.info.run_id)
        assert got.data.params["alpha"] == "0.5" and got.data.metrics["wape"] == pytest.approx(0.31)
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["manifest.json"]
    finally:
        _reset_mlflow()


@pytest.fixture(scope="module")
def small_world() -> tuple[ModelFrame, EvalSources]:
    """Generator small scenario (3 stores, 70 days, seed 42) -> SQLite source -> feature store -> model frame +
    sources: the session's shared small world (read only here), not a second build of the same history."""
    from training.pipeline import eval_sources, load_frame

    world = shared_small_world()
    return load_frame(world.features), eval_sources(world.db_url, load_settings(environ={}))


def _server_settings(server: str) -> Settings:
    """Defaults, the tracking URI from the environment override, and a training small enough for 70 days."""
    s = load_settings(environ={"REPLENISH__MLFLOW__TRACKING_URI": server, "REPLENISH__TRAINING__TUNED_PARAMS": ""})
    t = s.training.model_copy(update={
        # recursive, as in production (horizon 14): "auto" would switch to direct for this short horizon
        "horizon": 7, "origins": 1, "num_threads": 1, "run_ets": False, "strategy": "recursive",
        "lgbm": {**s.training.lgbm, "n_estimators": 30, "num_leaves": 15},
    })
    return s.model_copy(update={"training": t})


def _artifact_json(run_id: str, path: str) -> Any:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
    return json.loads(Path(local).read_text(encoding="utf-8"))


@pytest.mark.slow
def test_train_register_promote_load_against_the_server(
    mlflow_server: str, small_world: tuple[ModelFrame, EvalSources]
) -> None:
    from training.pipeline import promote_job, train_job

    frame, sources = small_world
    settings = _server_settings(mlflow_server)
    assert settings.mlflow.tracking_uri == mlflow_server
    name = settings.training.registry_name
    try:
        out = train_job(settings, frame, sources)
        client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
        # the run lives on the server: params, metrics, the feature manifest, the config and the plots
        run = client.get_run(out["run_id"])
        assert mlflow.get_tracking_uri() == mlflow_server
        p, m = run.data.params, run.data.metrics
        assert p["job"] == "train" and p["horizon"] == "7" and p["lgbm.n_estimators"] == "30"
        assert int(p["series"]) == frame.df["unique_id"].nunique() and p["last_date"] == str(frame.last_date.date())
        for model in ("lightgbm", "seasonal_naive", "incumbent", "oracle", "final"):
            assert 0.0 < m[f"bt.models.{model}.wape"] < 2.0, model
        assert m["bt.models.oracle.wape"] < m["bt.models.seasonal_naive.wape"]
        assert m["bt.models.final.wape"] == pytest.approx(out["metrics"]["final"]["wape"])
        assert {f"bt.final.wape_h{h:02d}" for h in range(1, 8)} <= set(m)
        assert _artifact_json(out["run_id"], "features/manifest.json") == json.loads(json.dumps(frame.manifest))
        cfg = _artifact_json(out["run_id"], "config/training.json")
        assert cfg["horizon"] == 7 and cfg["lgbm"]["n_estimators"] == 30 and cfg["registry_name"] == name
        plots = {a.path for a in client.list_artifacts(out["run_id"], "plots")}
        assert {"plots/forecast_vs_actual.png", "plots/error_by_horizon.png", "plots/calibration.png"} <= plots
        # the importance plot exactly when the registered blend has a LightGBM part (the selection decides)
        from training.blend import used_models

        weights = _artifact_json(out["run_id"], "model/blend_weights.json")
        # twoway is built from LightGBM's forecasts, so it fits a LightGBM part too
        with_lgbm = bool(used_models(weights) & {"lightgbm", "lightgbm_month", "ensemble", "twoway"})
        assert ("plots/feature_importance.png" in plots) == with_lgbm, weights
        png = Path(mlflow.artifacts.download_artifacts(run_id=out["run_id"], artifact_path="plots/calibration.png"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert run.data.tags["backtest_fingerprint"] == out["fingerprint"]

        # registered: a version of the project's model name pointing at this run, no champion yet
        versions = client.search_model_versions(f"name='{name}'")
        mine = [v for v in versions if v.run_id == out["run_id"]]
        assert len(mine) == 1 and int(mine[0].version) == int(out["version"])
        assert "champion" not in client.get_registered_model(name).aliases

        # promote (forced: a 70-day world need not land in the coverage band) -> alias + decision tags
        decision = promote_job(settings, force=True)
        assert decision["promoted"] and decision["challenger"] == int(out["version"])
        assert int(client.get_model_version_by_alias(name, "champion").version) == int(out["version"])
        mv = client.get_model_version(name, str(out["version"]))
        assert mv.tags["promote.decision"] == "promoted"
        assert client.get_run(out["run_id"]).data.tags["promote.decision"] == "promoted"

        # the champion loaded back from the server predicts exactly what the in-memory model did before logging
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        got = loaded.predict(out["example"]).reset_index(drop=True)
        expected = out["expected"].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected)
        assert len(got) == len(out["example"]) and np.isfinite(got["mean"].to_numpy(float)).all()
        assert (got["mean"] >= 0).all() and got["mean"].sum() > 0
    finally:
        _reset_mlflow()
