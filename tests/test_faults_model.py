"""Fault injection on the model watcher: broken versions in a real registry, a real ``bentoml serve`` following it.

Each broken version is registered, its forecasts cached (so only the model itself is wrong), then promoted: the
watcher must refuse it with the reason in ``/status`` and on ``/metrics``, keep serving the previous model, and
still load the next good version. Versions: an ``MLmodel`` that is not YAML, one whose ``flavors`` is ``5``, a
pickle truncated to a third, and a model that predicts NaN. Own world (own registry), so the shared serving world's
version numbers stay as the other serving tests expect them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from mlflow_store import new_store
from test_serving_support import start_server, wait_for


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from serving.devworld import build

    root = tmp_path_factory.mktemp("faults-model-world")
    new_store(root / "mlruns")
    w = build(root, progress=lambda _m: None)
    srv = start_server(w["config"], tmp_path_factory.mktemp("faults-model-serve"))
    yield {"server": srv, "world": w}
    srv.stop()


def _model_files(root: str, label: str) -> Path:
    """The artifact folder of a registered version in the world's local MLflow store."""
    from mlflow import MlflowClient

    from forecasting.config import load_settings
    from training import tracking

    s = load_settings(Path(root) / "config.yaml", environ={})
    tracking.setup(s.mlflow.tracking_uri, s.training.experiment)
    client = MlflowClient()
    mv = client.get_model_version(s.training.registry_name, label[1:])
    model_id = mv.model_id or mv.source.rsplit("/", 1)[-1]
    return Path(urlparse(client.get_logged_model(model_id).artifact_location).path)


def _corrupt_yaml(path: Path) -> None:
    (path / "MLmodel").write_bytes(b"flavors:\n  python_function: \x00\x07 {[ not yaml\n")


def _flavors_5(path: Path) -> None:
    (path / "MLmodel").write_text("flavors: 5\n")


def _truncated_pickle(path: Path) -> None:
    pkl = path / "artifacts" / "forecaster.joblib"
    data = pkl.read_bytes()
    pkl.write_bytes(data[: len(data) // 3])


def _register(world: dict, forecaster=None) -> str:
    from serving.devworld import register_copy

    return register_copy(world["root"], forecaster or world["forecaster"], scale=1.0, promote=False)


def _refused(srv, root: str, label: str, serving: str) -> dict:
    from serving.devworld import promote_alias

    promote_alias(root, label[1:])
    got = wait_for(lambda: label in (s := srv.status())["refused_versions"] and s, timeout_s=90)
    assert got["model_version"] == serving, got
    assert label in got["last_error"] and f"still serving {serving}" in got["last_error"]
    assert "Traceback" not in got["last_error"] and "\n" not in got["last_error"]
    return got


def _serves(srv, status: dict, version: str) -> None:
    body = {"store_id": 1, "order_date": status["order_dates"][0],
            "inventory": [{"material_id": 1, "on_hand": 10.0}]}
    r = srv.post("/replenishment", body)
    assert r.status_code == 200 and r.json()["model_version"] == version, r.text
    assert r.headers["x-model-version"] == version


@pytest.mark.parametrize("fault, reason", [
    (_corrupt_yaml, "cannot be loaded"),
    (_flavors_5, "cannot be loaded"),
    (_truncated_pickle, "cannot be loaded"),
    ("nan", "non-finite"),
])
def test_a_broken_version_is_refused_and_the_previous_model_keeps_serving(setup, fault, reason):
    srv, w = setup["server"], setup["world"]
    before = srv.status()
    serving = before["model_version"]
    if fault == "nan":  # a real model whose blend weight is NaN: every prediction is NaN
        bad = copy.deepcopy(w["forecaster"])
        bad.weights = {"all": {"lightgbm": float("nan")}}
        label = _register(w, bad)
    else:
        label = _register(w)
        fault(_model_files(w["root"], label))
    got = _refused(srv, w["root"], label, serving)
    assert reason in got["refused_versions"][label], got["refused_versions"]
    _serves(srv, got, serving)
    metrics = httpx.get(f"{srv.url}/metrics", timeout=10).text
    assert f'replenishment_model_refused_total{{model_version="{label}"}}' in metrics


def test_after_refusals_the_next_good_version_loads(setup):
    from serving.devworld import promote_alias

    srv, w = setup["server"], setup["world"]
    assert len(srv.status()["refused_versions"]) >= 1
    label = _register(w)
    promote_alias(w["root"], label[1:])
    got = wait_for(lambda: (s := srv.status())["model_version"] == label and s, timeout_s=90)
    assert got["last_error"] is None and label not in got["refused_versions"]
    _serves(srv, got, label)
    assert "Traceback" not in srv.log_text()
