"""`replenish backtest | train | tune | mlflow ui` as a data scientist runs them, in subprocesses on a small feature
store: quiet consoles (no library warnings or progress bars), the parameters' origin, run ids, headline metrics,
runs that span the job, no new model version when nothing changed, and the MLflow UI on the project's own store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from mlflow_store import new_store

from training.synthetic import synthetic_daily, synthetic_manifest

ROOT = Path(__file__).resolve().parent.parent
NOISE = ("Warning", "WARNING", "warn(", "Downloading artifacts", "it/s]", "%|", " INFO ", "…")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("cli-mlflow")
    d = synthetic_daily(n_stores=2, n_products=5, days=100, censor_rate=0.05, seed=5)
    fdir = tmp / "features"
    fdir.mkdir()
    d.drop(columns=["true_mean"]).to_parquet(fdir / "daily")
    (fdir / "manifest.json").write_text(json.dumps(synthetic_manifest(d)))
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp, fdir, n_estimators=30)))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REPLENISH")},
        "PYTHONPATH": str(ROOT),
        "REPLENISH_CONFIG": str(config),
        "COLUMNS": "200",
    }
    return {"tmp": tmp, "env": env, "store": new_store(tmp / "mlruns"), "fdir": fdir}


def _config(tmp: Path, fdir: Path, n_estimators: int) -> dict:
    from forecasting.config import load_settings

    lgbm = {**load_settings(environ={}).training.lgbm, "n_estimators": n_estimators}
    return {
        "mlflow": {"tracking_uri": str(tmp / "mlruns")},
        "features": {"out_dir": str(fdir)},
        "source": {"url": f"sqlite:///{tmp / 'absent.db'}"},
        "training": {"origins": 1, "horizon": 7, "run_ets": False, "tuned_params": str(tmp / "tuned.yaml"),
                     "lgbm": lgbm, "tune": {"origins": 1}},
    }


def cli(project: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replenish.cli", *args], capture_output=True, text=True,
                          env=project["env"], cwd=project["tmp"], timeout=timeout)


def _quiet(proc: subprocess.CompletedProcess) -> None:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text
    for noise in NOISE:
        assert noise not in text, (noise, text[-3000:])


def _client(project: dict):
    from training import tracking

    tracking.setup(str(project["store"]), "replenishment")
    return mlflow.MlflowClient()


@pytest.fixture(scope="module")
def trained(project) -> dict:
    t0 = time.time()
    proc = cli(project, "train")
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"proc": proc, "elapsed": elapsed}


def test_train_is_quiet_and_says_what_it_used_and_where_it_went(project, trained):
    proc = trained["proc"]
    _quiet(proc)
    assert "LightGBM parameters: num_leaves 31" in proc.stderr and "n_estimators 30" in proc.stderr
    assert "from training.lgbm in the configuration (no tuning applied)" in proc.stderr
    origins = [ln for ln in proc.stderr.splitlines() if "backtest origin" in ln]
    assert len(origins) == 1 and "origin 1 of 1" in origins[0]
    assert "MLflow run " in proc.stdout and "replenishment-forecaster version 1" in proc.stdout
    assert "WAPE" in proc.stdout and "intervals held the actual" in proc.stdout


def test_train_run_spans_the_job_with_headline_metrics_and_readable_plots(project, trained):
    client = _client(project)
    exp = client.get_experiment_by_name("replenishment")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"  # opens on its runs, not GenAI
    run_id = trained["proc"].stdout.split("MLflow run ")[1].split(":")[0]
    run = client.get_run(run_id)
    head = {k for k in run.data.metrics if k.startswith("headline.")}
    assert {"headline.final_wape", "headline.final_coverage_80", "headline.final_coverage_95"} <= head
    assert len(head) <= 6  # a few, named as such; the details live under bt.*
    assert "WAPE" in run.data.tags["mlflow.note.content"]
    # the run covers the backtest and the final fit, not just the logging at the end
    duration = (run.info.end_time - run.info.start_time) / 1000
    fitted = sum(v for k, v in run.data.metrics.items() if k.startswith("time."))
    assert duration >= 0.9 * fitted and duration >= 0.3 * trained["elapsed"] - 15
    arts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert "plots/forecast_vs_actual.png" in arts


def test_train_again_with_nothing_changed_registers_no_new_version(project, trained):
    proc = cli(project, "train", "--if-changed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _quiet(proc)
    assert "nothing changed since replenishment-forecaster version 1" in proc.stdout
    client = _client(project)
    assert len(client.search_model_versions("name='replenishment-forecaster'")) == 1
    # a changed configuration is a new model
    changed = project["tmp"] / "changed.yaml"
    changed.write_text(yaml.safe_dump(_config(project["tmp"], project["fdir"], n_estimators=31)))
    env = {**project["env"], "REPLENISH_CONFIG": str(changed)}
    proc = subprocess.run([sys.executable, "-m", "replenish.cli", "train", "--if-changed", "--no-register",
                           "--json"], capture_output=True, text=True, env=env, cwd=project["tmp"], timeout=600)
    assert proc.returncode == 0 and json.loads(proc.stdout)["run_id"], proc.stderr[-2000:]


def test_tune_changes_nothing_until_applied_and_backtest_prints_its_run_id(project, trained):
    proc = cli(project, "tune", "--trials", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _quiet(proc)
    run_id = proc.stdout.split("MLflow run ")[1].split()[0]
    assert not (project["tmp"] / "tuned.yaml").exists()
    proc = cli(project, "tune", "apply", run_id)
    assert proc.returncode == 0 and (project["tmp"] / "tuned.yaml").is_file(), proc.stderr
    # one backtest run checks both: it uses the applied parameters and prints its own run id (quietly)
    proc = cli(project, "backtest")
    assert proc.returncode == 0, proc.stderr[-2000:]
    _quiet(proc)
    assert f"MLflow tuning run {run_id}" in proc.stderr
    backtest_id = proc.stdout.split("MLflow run ")[1].split()[0]
    assert backtest_id != run_id and _client(project).get_run(backtest_id).data.tags["job"] == "backtest"
    proc = cli(project, "tune", "apply", "0123456789abcdef")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no tuning run" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_opens_the_projects_own_store(project, trained):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "replenish.cli", "mlflow", "ui", "--port", str(port)],
                            env=project["env"], cwd=project["tmp"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # its server imports MLflow's whole app: slow on a loaded machine
        while True:
            try:
                r = httpx.get(f"{url}/api/2.0/mlflow/experiments/get-by-name",
                              params={"experiment_name": "replenishment"}, timeout=5)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "the UI did not start"
                time.sleep(1)
        assert r.status_code == 200, r.text
        tags = {t["key"]: t["value"] for t in r.json()["experiment"].get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        runs = httpx.post(f"{url}/api/2.0/mlflow/runs/search",
                          json={"experiment_ids": [r.json()["experiment"]["experiment_id"]]}, timeout=10).json()
        assert len(runs["runs"]) >= 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the UI's own server processes too
        proc.wait(timeout=30)


def test_mlflow_ui_without_a_store_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REPLENISH__MLFLOW__TRACKING_URI": str(tmp_path / "none")}
    proc = subprocess.run([sys.executable, "-m", "replenish.cli", "mlflow", "ui"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no MLflow store yet")
    assert not (tmp_path / "none").exists()
