"""Backtest JSON, the MLflow train -> promote -> load round trip, tuning and the CLI, on a tiny synthetic panel."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from forecasting.config import load_settings
from forecasting.errors import DataError
from training import pipeline
from training.backtest import Backtester
from training.data import to_model_frame
from training.source import EvalSources
from training.synthetic import synthetic_daily, synthetic_manifest

H = 7


def _settings(tmp, **training):
    s = load_settings(environ={})
    t = s.training.model_copy(
        update={
            "origins": 2,
            "horizon": H,
            "num_threads": 1,
            "tuned_params": None,
            "lgbm": {**s.training.lgbm, "n_estimators": 40, "num_leaves": 15},
            **training,
        }
    )
    t.tune = t.tune.model_copy(update={"origins": 2})
    return s.model_copy(update={"training": t, "mlflow": s.mlflow.model_copy(update={"tracking_uri": str(tmp / "ml")})})


@pytest.fixture(scope="module")
def panel():
    d = synthetic_daily(n_stores=2, n_products=6, days=110, censor_rate=0.05, seed=3)
    return d, to_model_frame(d, synthetic_manifest(d))


def _sources(d: pd.DataFrame) -> EvalSources:
    truth = d[["store_id", "product_id", "date", "true_mean"]]
    truth = truth.rename(columns={"date": "ds", "true_mean": "expected_qty"})
    bom = pd.DataFrame({"product_id": [1, 2, 3, 4, 5, 6, 1], "material_id": [10, 10, 11, 11, 12, 12, 12],
                        "qty_per_unit": [1.0, 0.5, 1.0, 2.0, 1.0, 1.0, 0.25]})
    # incumbent records: its rule at material level, issued every day for the next 7 days
    mat = d.merge(bom, on="product_id").assign(q=lambda x: x["qty"] * x["qty_per_unit"])
    mat = mat.groupby(["store_id", "material_id", "date"], as_index=False)["q"].sum()
    rows = []
    for (s, m), g in mat.groupby(["store_id", "material_id"]):
        g = g.set_index("date")["q"]
        for issued in g.index[-40:]:
            for k in range(1, H + 1):
                tgt = issued + pd.Timedelta(days=k - 1)
                same = [tgt - pd.Timedelta(days=7 * i) for i in range(1, 5)]
                rows.append((s, m, issued, tgt, float(g.reindex(same).mean())))
    inc = pd.DataFrame(rows, columns=["store_id", "material_id", "issued_on", "ds", "predicted_qty"])
    return EvalSources(bom=bom, truth=truth, incumbent=inc)


def test_backtest_json_has_every_model_segment_and_the_oracle_floor(panel, tmp_path):
    d, fr = panel
    s = _settings(tmp_path)
    res = pipeline.run_backtest(fr, s.training, _sources(d))
    m = res.metrics
    for name in ("seasonal_naive", "auto_ets", "croston", "lightgbm", "incumbent", "oracle", "final", "ensemble"):
        assert {"wape", "mase", "bias", "coverage_80", "coverage_95"} <= set(m["models"][name]), name
    assert m["models"]["final"]["model"] == "blend" and set(m["blend"]["by_origin"]) == set(m["origins"])
    # each origin's weights were learned before it: per segment, they sum to one over the candidates
    for w in m["blend"]["by_origin"].values():
        assert all(abs(sum(v.values()) - 1) < 1e-9 and set(v) <= set(m["blend"]["candidates"]) for v in w.values())
    assert m["models"]["oracle"]["wape"] < m["models"]["seasonal_naive"]["wape"]
    assert abs(m["models"]["oracle"]["bias"]) < 0.2  # ~150 rows: noise only (0.001 on 800 series)
    assert 0.6 < m["models"]["lightgbm"]["coverage_80"] < 0.95
    assert set(m["by_horizon"]["lightgbm"]) == {str(k) for k in range(1, H + 1)}
    # censored days are scored apart, never in the main metrics
    n_cens = int(res.preds["censored"].sum())
    assert n_cens > 0 and m["censored"]["n"] == n_cens
    assert m["models"]["lightgbm"]["n"] == len(res.preds) - n_cens
    assert "vs_incumbent_records" in m["material"] and "incumbent_records" in m["material"]["vs_incumbent_records"]
    assert len(m["origins"]) == 2 and pd.Timestamp(m["origins"][-1]) == fr.last_date - pd.Timedelta(days=H)
    # every forecast was made from data up to its origin: horizons 1..H only
    assert res.preds["horizon"].between(1, H).all()
    json.dumps(m, default=str)


def test_backtest_without_truth_or_incumbent_has_no_such_entries(panel, tmp_path):
    _, fr = panel
    s = _settings(tmp_path, run_ets=False)
    m = pipeline.run_backtest(fr, s.training, EvalSources()).metrics
    assert "oracle" not in m["models"] and "material" not in m and "auto_ets" not in m["models"]
    # no incumbent system in the source: its rule is just a baseline, named for what it is
    assert "incumbent" not in m["models"] and "weekday_mean" in m["models"]
    assert m["models"]["final"]["model"] == "blend"
    forced = pipeline.run_backtest(fr, _settings(tmp_path, run_ets=False, final="lightgbm").training, EvalSources())
    f = forced.metrics["models"]
    assert f["final"]["model"] == "lightgbm" and f["final"]["wape"] == f["lightgbm"]["wape"]


def test_too_short_history_is_a_data_error(panel, tmp_path):
    _, fr = panel
    with pytest.raises(DataError, match="too few"):
        Backtester(_settings(tmp_path).training).cutoffs(fr, origins=12, step=7, h=14)


def test_train_promote_and_champion_round_trip(panel, tmp_path):
    d, fr = panel
    s = _settings(tmp_path, run_ets=False)
    first = pipeline.train_job(s, fr, EvalSources())
    assert first["version"] == 1
    dec = pipeline.promote_job(s, force=True)
    assert dec["promoted"]
    # loading the champion back predicts exactly what the in-memory model predicted before logging
    loaded = mlflow.pyfunc.load_model(f"models:/{s.training.registry_name}@champion")
    got = loaded.predict(first["example"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), first["expected"].reset_index(drop=True))
    direct = first["forecaster"].predict()
    assert {"mean", "q0.5", "q0.8", "q0.9", "q0.95", "q0.99", "alpha", "shared"} <= set(direct.columns)
    assert (np.diff(direct[["q0.5", "q0.8", "q0.9", "q0.95", "q0.99"]].to_numpy(), axis=1) >= 0).all()
    assert direct["horizon"].max() == s.training.horizon
    # a second identical training does not beat the champion by 1%: rejected, alias unchanged, reason tagged
    second = pipeline.train_job(s, fr, EvalSources())
    dec2 = pipeline.promote_job(s)
    assert not dec2["promoted"] and dec2["compared_by"].startswith("logged") and dec2["champion"] == 1
    client = mlflow.MlflowClient()
    assert int(client.get_model_version_by_alias(s.training.registry_name, "champion").version) == 1
    tags = client.get_run(second["run_id"]).data.tags
    assert tags["promote.decision"] == "rejected" and "window pinball loss" in tags["promote.reason"]
    assert dec2["metric"] == "window_spl" and dec2["challenger_metrics"]["window_spl"] > 0
    assert "backtest/per_series.parquet" in {a.path for a in client.list_artifacts(first["run_id"], "backtest")}
    cal = first["forecaster"].calibration  # window calibration fitted on the backtest, stored with the model
    assert cal is not None and cal.windows > 0 and set(cal.factors) <= set(fr.df["product_id"].astype(int))
    assert "model/calibration.json" in {a.path for a in client.list_artifacts(first["run_id"], "model")}
    arts = {a.path for a in client.list_artifacts(first["run_id"], "plots")}
    assert {"plots/forecast_vs_actual.png", "plots/error_by_horizon.png", "plots/calibration.png"} <= arts
    # the model's environment is pinned explicitly (no inference): the versions that trained it
    import lightgbm

    reqs = mlflow.pyfunc.get_model_dependencies(f"models:/{s.training.registry_name}@champion")
    assert f"lightgbm=={lightgbm.__version__}" in Path(reqs).read_text().split()


def test_tune_logs_a_run_and_changes_training_only_when_applied(panel, tmp_path):
    from forecasting.errors import ConfigError
    from training.tune import SPACE, apply_tuned, tune_job, tuning_cutoffs

    _, fr = panel
    tuned = tmp_path / "tuned.yaml"
    s = _settings(tmp_path, tuned_params=str(tuned))
    s.training.tune = s.training.tune.model_copy(update={"min_rel_improvement": 0.0})
    # tuning windows end on or before the backtest's first origin: tuning never sees what the backtest scores
    first_bt = Backtester(s.training, {}, with_stats=False).cutoffs(fr, s.training.origins, s.training.step_days, H)[0]
    cuts = tuning_cutoffs(s, fr)
    assert len(cuts) == 2 and all(c + pd.Timedelta(days=H) <= first_bt for c in cuts)
    out = tune_job(s, fr, trials=2)
    # the current parameters run first, so "best" can never be worse than them
    assert out["best_value"] <= out["current_value"] and out["trials"] == 2 and out["recommended"]
    # a search changes nothing by itself: no file, training keeps training.lgbm
    assert not tuned.exists() and pipeline.read_tuned(s.training) == {}
    assert pipeline.params_origin(s.training).startswith("training.lgbm in the configuration")
    run = mlflow.get_run(out["run_id"])
    assert run.data.tags["job"] == "tune" and "headline.best_window_spl" in run.data.metrics
    nested = [r for r in mlflow.search_runs(output_format="list") if r.data.tags.get("mlflow.parentRunId")]
    assert len(nested) == 2  # one nested MLflow run per trial
    first = min(nested, key=lambda r: r.info.start_time)
    assert int(first.data.params["num_leaves"]) == s.training.lgbm["num_leaves"]  # trial 0 = current parameters
    # a person applies it: the file names the run, train reads it and says where the parameters came from
    applied = apply_tuned(s, out["run_id"])
    doc = yaml.safe_load(tuned.read_text())
    assert doc["run_id"] == out["run_id"] and set(doc["lgbm"]) == set(SPACE) == set(applied["lgbm"])
    assert doc["origins"] == [str(c.date()) for c in cuts]
    assert pipeline.read_tuned(s.training) == doc["lgbm"]
    assert out["run_id"] in pipeline.params_origin(s.training)
    # a tuned file that names no run (what tune used to write on its own) is refused, not silently used
    tuned.write_text(yaml.safe_dump({"lgbm": {"num_leaves": 54}}))
    with pytest.raises(ConfigError, match="tune apply"):
        pipeline.read_tuned(s.training)


def test_cli_backtest_json_from_feature_store_and_db(panel, tmp_path, sqlite_url, monkeypatch):
    from sqlalchemy import insert

    from forecasting.source.db import init_db, make_engine
    from forecasting.source.schema import build_schema
    from replenish.cli import app

    d, _ = panel
    fdir = tmp_path / "features"
    fdir.mkdir()
    d.drop(columns=["true_mean"]).to_parquet(fdir / "daily")
    (fdir / "manifest.json").write_text(json.dumps(synthetic_manifest(d)))
    schema = build_schema()
    eng = make_engine(sqlite_url, schema)
    init_db(eng, schema)
    src = _sources(d)
    with eng.begin() as conn:
        conn.execute(insert(schema["bom"]), src.bom.to_dict("records"))
        t = src.truth.rename(columns={"ds": "date"}).assign(date=lambda x: x["date"].dt.date)
        conn.execute(insert(schema["demand_truth"]), t.to_dict("records"))
    eng.dispose()
    monkeypatch.setenv("REPLENISH__MLFLOW__TRACKING_URI", str(tmp_path / "ml"))
    monkeypatch.setenv("REPLENISH__TRAINING__ORIGINS", "1")
    monkeypatch.setenv("REPLENISH__TRAINING__RUN_ETS", "false")
    monkeypatch.setenv("REPLENISH__TRAINING__TUNED_PARAMS", "")
    r = CliRunner().invoke(app, ["backtest", "--db", sqlite_url, "--features", str(fdir), "--horizon", "7",
                                 "--json", "--no-log"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout[r.stdout.index("{"):])
    assert {"lightgbm", "weekday_mean", "oracle", "final", "seasonal_naive", "croston"} <= set(m["models"])
    assert "incumbent_records" not in json.dumps(m)  # this source has no t_replenishment_forecast rows
    last = pd.Timestamp(d["date"].max())
    assert m["models"]["final"]["wape_mean"] > 0 and m["origins"][-1] == str((last - pd.Timedelta(days=7)).date())
    # --until: the history is cut at that day, so the origins (and what they score) end by it
    cut = last - pd.Timedelta(days=10)
    r = CliRunner().invoke(app, ["backtest", "--db", sqlite_url, "--features", str(fdir), "--horizon", "7",
                                 "--until", str(cut.date()), "--json", "--no-log"])
    assert r.exit_code == 0, r.output
    cm = json.loads(r.stdout[r.stdout.index("{"):])
    assert cm["origins"] == [str((cut - pd.Timedelta(days=7)).date())]
    r = CliRunner().invoke(app, ["backtest", "--features", str(fdir), "--until", "1999-01-01", "--no-log"])
    assert type(r.exception).__name__ == "DataError" and "--until 1999-01-01" in str(r.exception)  # main(): exit 2
