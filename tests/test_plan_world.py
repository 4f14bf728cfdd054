"""A small generated world for the plan / simulate tests (built once per session), and the batch forecast's tests.

The world: the generator's small scenario in SQLite, its feature store, a tiny LightGBM registered as the champion
in a local MLflow store, and the champion's batch forecasts in the cache; a YAML config points the CLI at all of it.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from forecasting.config import Settings, load_settings, resolve_path
from forecasting.errors import DataError
from forecasting.source.db import open_source

SMALL = resolve_path("configs/scenarios/small.yaml")
END = date(2025, 11, 30)  # the small scenario's last day


@dataclass(frozen=True)
class SmallWorld:
    root: Path
    db_url: str
    config: Path
    settings: Settings
    end: date

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def forecasts(self) -> Path:
        return self.root / "forecasts"


def tiny_overrides(root: Path) -> dict:
    return {
        "mlflow": {"tracking_uri": str(root / "mlruns")},
        "features": {"out_dir": str(root / "features")},
        "training": {"num_threads": 1, "tuned_params": None, "run_ets": False, "horizon": 14,
                     "lgbm": {"n_estimators": 25, "num_leaves": 15, "learning_rate": 0.1}},
        "replenishment": {"n_samples": 300},
        "planning": {"forecasts_dir": str(root / "forecasts"), "reports_dir": str(root / "reports"),
                     "plot_materials": 2,
                     "simulation": {"n_samples": 150, "calib_days": 7, "refit_days": 14}},
    }


def register_champion(settings: Settings, uncertainty: dict | None = None) -> int:
    """Fit a tiny LightGBM forecaster on the feature store and give it the champion alias."""
    import mlflow
    from mlflow import MlflowClient

    from training import tracking
    from training.forecaster import DemandForecaster
    from training.pipeline import load_frame

    cfg = settings.training
    model = DemandForecaster(cfg, "lightgbm", dict(cfg.lgbm), uncertainty or {"all": (0.15, 0.02)})
    model.fit(load_frame(settings.features.out_dir))
    tracking.setup(settings.mlflow.tracking_uri, cfg.experiment)
    with mlflow.start_run(run_name="test-champion"):
        info, _, _ = tracking.log_forecaster(model, cfg.registry_name)
    MlflowClient().set_registered_model_alias(cfg.registry_name, tracking.CHAMPION, info.registered_model_version)
    return int(info.registered_model_version)


@functools.cache
def small_world() -> SmallWorld:
    """Seed, features, champion, batch forecasts: about 15 s once per session."""
    from features.job import build_features
    from generator.api import generate
    from training.batch import run_batch

    root = Path(tempfile.mkdtemp(prefix="plan-world-"))
    atexit.register(shutil.rmtree, root, True)
    url = f"sqlite:///{root / 'source.db'}"
    cfg_path = root / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_overrides(root)))
    settings = load_settings(cfg_path, environ={})
    engine, schema = open_source(url)
    generate(engine, schema, str(SMALL), seed=42)
    build_features(engine, schema, str(root / "features"), config=settings.features)
    engine.dispose()
    register_champion(settings)
    run_batch(settings)
    return SmallWorld(root, url, cfg_path, settings, END)


@pytest.fixture(scope="session")
def world() -> SmallWorld:
    return small_world()


def cli(*args: str):
    from replenish.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run through ``replenish.cli.main`` (the real error handling) and return (exit code, stdout, stderr)."""
    import contextlib
    import io

    from replenish.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:  # the rich consoles write to whatever sys.stdout/sys.stderr are at call time
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_batch_cache_follows_the_policy_contract(world):
    from forecasting.inventory.material_demand import validate_forecasts
    from forecasting.source.forecast_cache import latest

    c = latest(world.forecasts)
    assert c.model_version.startswith("v") and c.data_date == world.end
    f = c.frame
    assert {"store_id", "product_id", "date", "mean", "dispersion", "shared_dispersion", "segment"} <= set(f.columns)
    assert (f["shared_dispersion"] <= f["dispersion"] + 1e-12).all() and (f["mean"] >= 0).all()
    assert pd.to_datetime(f["date"]).min().date() == date(2025, 12, 1)
    assert sorted(f["horizon"].unique()) == list(range(1, 15))
    validate_forecasts(f)  # the engine accepts it as is


def test_batch_equals_the_champion_on_its_own_last_day_and_moves_with_new_data(world):
    from training.batch import forecast_from, load_champion
    from training.pipeline import load_frame

    champ = load_champion(world.settings)
    frame = load_frame(world.features)
    own = champ.forecaster.predict(7)
    again = forecast_from(champ.forecaster, frame, 7)
    m = own.merge(again, left_on=["store_id", "product_id", "ds"], right_on=["store_id", "product_id", "date"])
    assert len(m) == len(own) and (m["mean_x"] - m["mean_y"]).abs().max() < 1e-9
    earlier = forecast_from(champ.forecaster, frame.until(pd.Timestamp("2025-11-20")), 7)
    assert pd.to_datetime(earlier["date"]).min() == pd.Timestamp("2025-11-21")


def test_forecast_cli_json_and_errors(world, tmp_path):
    code, out, _ = run_cli("forecast", "--date", "2025-11-25", "--config", str(world.config), "--forecasts",
                           str(tmp_path / "fc"), "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["data_date"] == "2025-11-25" and summary["first_date"] == "2025-11-26"
    assert Path(summary["path"]).is_dir()
    code, _, err = run_cli("forecast", "--date", "2026-03-01", "--config", str(world.config), "--forecasts",
                           str(tmp_path / "fc"))
    assert code == 2 and "feature store ends on 2025-11-30" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "cfg.yaml"
    empty.write_text(yaml.safe_dump({"mlflow": {"tracking_uri": str(tmp_path / "nothing")}}))
    code, _, err = run_cli("forecast", "--config", str(empty))
    assert code == 2 and "no champion" in err


def test_no_champion_is_a_data_error(tmp_path):
    from training.batch import load_champion

    s = load_settings(environ={})
    s = s.model_copy(update={"mlflow": s.mlflow.model_copy(update={"tracking_uri": str(tmp_path / "ml")})})
    with pytest.raises(DataError, match="no champion"):
        load_champion(s)
