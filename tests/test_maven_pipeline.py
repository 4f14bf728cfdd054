"""The real-POS contract on a slice of the Maven log: ``import-pos`` -> ``features build`` -> ``backtest --json``.

Why a slice: the whole log takes minutes (``benchmarks/bench_maven.py`` runs it); eight weeks exercise the same
code path — a 2023 calendar, three stores, no ireplenishment tables — in well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
MAVEN = Path("/work/shared/data/maven_coffee_shop_sales.csv.gz")
MAPPING = ROOT / "configs" / "sources" / "maven_coffee.yaml"
pytestmark = pytest.mark.skipif(not MAVEN.is_file(), reason=f"acceptance data {MAVEN} not present")
BASELINES = ("seasonal_naive", "auto_ets", "croston", "weekday_mean", "lightgbm")


def test_maven_slice_import_features_backtest_json(tmp_path, monkeypatch):
    from replenish.cli import app

    raw = pd.read_csv(MAVEN, dtype=str, keep_default_na=False)
    days = pd.to_datetime(raw["transaction_date"])
    path = tmp_path / "maven_8w.csv.gz"
    raw[days < days.min() + pd.Timedelta(weeks=8)].to_csv(path, index=False, compression="gzip")
    db, feat = f"sqlite:///{tmp_path / 'X.db'}", str(tmp_path / "features")
    monkeypatch.setenv("REPLENISH__TRAINING__TUNED_PARAMS", "")
    monkeypatch.setenv("REPLENISH__MLFLOW__TRACKING_URI", str(tmp_path / "ml"))
    run = CliRunner().invoke
    r = run(app, ["import-pos", str(path), "--mapping", str(MAPPING), "--db", db])
    assert r.exit_code == 0, r.output
    r = run(app, ["features", "build", "--db", db, "--out", feat])
    assert r.exit_code == 0, r.output
    r = run(app, ["backtest", "--db", db, "--features", feat, "--origins", "2", "--step", "7", "--horizon", "7",
                  "--json", "--no-log"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout[r.stdout.index("{"):])

    models = m["models"]
    assert {"final", *BASELINES} <= set(models)
    # a POS log has no generator truth and no incumbent system: no oracle, no incumbent entries
    assert "oracle" not in models and "incumbent" not in models and "incumbent_records" not in json.dumps(m)
    assert m["origins"] == ["2023-02-11", "2023-02-18"] and m["horizon"] == 7
    for name in ("final", *BASELINES):
        assert {"wape", "mase", "bias", "coverage_80", "coverage_95"} <= set(models[name]), name
    assert models["final"]["model"] == "blend"
    best = min(models[b]["wape"] for b in BASELINES)
    assert models["final"]["wape"] <= best * 1.05, (models["final"]["wape"], best)
    assert models["final"]["wape"] < models["seasonal_naive"]["wape"]
    assert set(m["by_horizon"]["final"]) == {str(k) for k in range(1, 8)}
