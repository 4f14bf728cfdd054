"""The tracking code paths work against a real MLflow server backed by PostgreSQL (not only the local store)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient


@pytest.mark.slow
def test_server_roundtrip_params_registry_alias(mlflow_server, tmp_path):
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
        mlflow.set_tracking_uri(None)
