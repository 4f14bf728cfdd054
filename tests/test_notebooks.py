"""Both notebooks run top to bottom on a small generated history, so they never rot.

The world: the generator's small scenario (3 stores, 70 days) in a SQLite source, its feature store, and a tiny
``train`` logged to a local MLflow store and promoted. The notebooks get it through the same environment variables
a user sets (``REPLENISH_DB_URL``, ``REPLENISH_FEATURES_DIR``, ``REPLENISH__MLFLOW__TRACKING_URI``) and run in a
kernel spec written to a temp folder that starts this very interpreter, so no global Jupyter set-up is needed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from forecasting.config import FeaturesConfig, load_settings

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("exploration.ipynb", "model_comparison.ipynb")
KERNEL = "replenish-test-venv"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebooks_have_no_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and any(c.cell_type == "markdown" for c in nb.cells)
    for c in code:
        assert c.outputs == [] and c.execution_count is None, f"{name}: outputs not stripped in cell {c.get('id')}"
    assert nb.metadata.kernelspec.name == "python3"
    assert "widgets" not in nb.metadata


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernel spec that runs ``sys.executable`` (the venv's python with its ipykernel), in a temp prefix."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    spec = Path(install(kernel_name=KERNEL, prefix=str(prefix)))
    argv = json.loads((spec / "kernel.json").read_text())["argv"]
    assert argv[0] == sys.executable
    return spec.parent


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Small-scenario source + feature store + one tiny promoted training run; the notebooks' environment."""
    import mlflow

    from features.job import build_features
    from forecasting.source.db import make_engine
    from forecasting.source.schema import build_schema
    from generator.api import generate
    from training.pipeline import eval_sources, load_frame, promote_job, train_job

    root = tmp_path_factory.mktemp("nb-world")
    url = f"sqlite:///{root / 'source.db'}"
    schema = build_schema()
    engine = make_engine(url, schema)
    try:
        generate(engine, schema, "configs/scenarios/small.yaml", 42)
        build_features(engine, schema, str(root / "features"), full=True, config=FeaturesConfig())
    finally:
        engine.dispose()
    env = {
        "REPLENISH_DB_URL": url,
        "REPLENISH_FEATURES_DIR": str(root / "features"),
        "REPLENISH__MLFLOW__TRACKING_URI": str(root / "mlruns"),
        "REPLENISH__TRAINING__TUNED_PARAMS": "",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    s = load_settings(environ=env)
    t = s.training.model_copy(update={
        # recursive, as in production (horizon 14): "auto" would switch to direct for this short horizon
        "horizon": 7, "origins": 1, "num_threads": 1, "run_ets": False, "strategy": "recursive",
        "lgbm": {**s.training.lgbm, "n_estimators": 20, "num_leaves": 15},
    })
    s = s.model_copy(update={"training": t})
    try:
        out = train_job(s, load_frame(root / "features"), eval_sources(url, s))
        promote_job(s, force=True)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("REPLENISH_RUN_ID", raising=False)
        mp.delenv("REPLENISH_CONFIG", raising=False)
        yield {"run_id": out["run_id"], "final": out["final"], "root": root, "url": url}


def _execute(name: str, kernel_dir: Path) -> nbformat.NotebookNode:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    # any exception in a cell raises CellExecutionError here, naming the cell and the traceback
    NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text the notebook printed or displayed, and the number of figures."""
    text, images = [], 0
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.output_type != "error", o
            if o.output_type == "stream":
                text.append(o.text)
            data = o.get("data", {})
            images += "image/png" in data
            text += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(text), images


@pytest.mark.slow
def test_exploration_runs_on_a_small_history(world: dict[str, Any], kernel_dir: Path) -> None:
    text, images = _outputs(_execute("exploration.ipynb", kernel_dir))
    assert f"source: {world['url']}" in text  # the notebook read the world given by the environment
    assert "3 stores, 94 products" in text
    for needle in ("Luckin 755 Broadway", "weekend / weekday", "peak hour", "iced share", "Thanksgiving Day",
                   "out of stock", "lift"):
        assert needle in text, needle
    assert images >= 8  # one figure per section


@pytest.mark.slow
def test_model_comparison_runs_on_the_tracked_runs(world: dict[str, Any], kernel_dir: Path) -> None:
    text, images = _outputs(_execute("model_comparison.ipynb", kernel_dir))
    assert f"tracking store: sqlite:///{world['root'] / 'mlruns' / 'mlflow.db'}" in text
    # the champion's run is the one examined, and its backtest table names every model
    assert f"run {world['run_id']} (train-{world['final']})" in text
    for needle in ("seasonal_naive", "oracle", "incumbent_records", "vs seasonal_naive", "in_band", "new_store"):
        assert needle in text, needle
    assert images >= 5  # horizon, segment, coverage, logged forecast-vs-actual, champion forecast
