"""The whole pipeline on a slice of the real Maven POS log, with configuration only: ``import-pos`` -> ``features
build`` -> ``backtest --json``, and ``train`` -> ``promote`` -> ``forecast`` -> ``plan`` -> the HTTP API.

Why a slice: the whole log takes minutes (``benchmarks/bench_maven.py`` runs it); ten weeks exercise the same
code path — a 2023 calendar, three stores with their own ids, no ireplenishment history (materials are the products
one to one, no inventory counts) — in about a minute. The Maven overlay ``configs/maven.yaml`` is used as a user
would (``--config``), merged with this test's paths and a small LightGBM.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from forecasting.config import shared_data_path

ROOT = Path(__file__).resolve().parent.parent
MAVEN = shared_data_path("maven_coffee_shop_sales.csv.gz")
MAPPING = ROOT / "configs" / "sources" / "maven_coffee.yaml"
OVERLAY = ROOT / "configs" / "maven.yaml"
pytestmark = pytest.mark.skipif(not MAVEN.is_file(), reason=f"acceptance data {MAVEN} not present")
BASELINES = ("seasonal_naive", "auto_ets", "croston", "weekday_mean", "lightgbm")
MAVEN_STORES = [3, 5, 8]  # the log's own store ids (Astoria, Lower Manhattan, Hell's Kitchen)


def _cli(args: list[str]) -> str:
    from replenish.cli import app

    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, (args[0], r.output[-3000:], repr(r.exception))
    return r.stdout


def _json(out: str) -> dict:
    return json.loads(out[out.index("{"):])


@pytest.fixture(scope="module")
def maven(tmp_path_factory) -> dict:
    """The first ten weeks of the log imported and featurised, with a config = Maven overlay + scratch paths."""
    root = tmp_path_factory.mktemp("maven")
    raw = pd.read_csv(MAVEN, dtype=str, keep_default_na=False)
    days = pd.to_datetime(raw["transaction_date"])
    path = root / "maven_10w.csv.gz"
    raw[days < days.min() + pd.Timedelta(weeks=10)].to_csv(path, index=False, compression="gzip")
    cfg = yaml.safe_load(OVERLAY.read_text(encoding="utf-8"))
    db, feat = f"sqlite:///{root / 'X.db'}", str(root / "features")
    cfg["source"] = {"url": db}
    cfg["mlflow"] = {"tracking_uri": str(root / "mlruns")}
    cfg["features"] = {"out_dir": feat}
    cfg["planning"] = {"forecasts_dir": str(root / "forecasts"), "reports_dir": str(root / "reports")}
    cfg["training"].update(origins=1, tuned_params=None, lgbm={"n_estimators": 60})
    cfg["replenishment"] = {"n_samples": 400}  # a faster plan and server load
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    _cli(["import-pos", str(path), "--mapping", str(MAPPING), "--db", db])
    _cli(["features", "build", "--db", db, "--out", feat])
    return {"root": root, "db": db, "features": feat, "config": str(config)}


def test_maven_slice_import_features_backtest_json(maven):
    out = _cli(["backtest", "--db", maven["db"], "--features", maven["features"], "--origins", "2", "--step", "7",
                "--horizon", "7", "--json", "--no-log", "--config", maven["config"]])
    m = _json(out)
    models = m["models"]
    assert {"final", *BASELINES} <= set(models)
    # a POS log has no generator truth and no incumbent system: no oracle, no incumbent entries
    assert "oracle" not in models and "incumbent" not in models and "incumbent_records" not in json.dumps(m)
    assert m["origins"] == ["2023-02-25", "2023-03-04"] and m["horizon"] == 7
    for name in ("final", *BASELINES):
        assert {"wape", "mase", "bias", "coverage_80", "coverage_95"} <= set(models[name]), name
    assert models["final"]["model"] == "blend"
    best = min(models[b]["wape"] for b in BASELINES)
    assert models["final"]["wape"] <= best * 1.05, (models["final"]["wape"], best)
    assert models["final"]["wape"] < models["seasonal_naive"]["wape"]
    assert set(m["by_horizon"]["final"]) == {str(k) for k in range(1, 8)}


def test_month_lag_features_are_leak_free_and_level_free():
    """A day's month-lag value only reads sales up to 28 days before it: adding later sales changes nothing."""
    from training.models import month_lag_features

    ds = pd.date_range("2023-01-01", "2023-04-30", freq="D")
    base = np.random.default_rng(3).poisson(5, len(ds)).astype(float)
    frames = []
    for sid, scale in ((1, 1.0), (2, 10.0)):
        frames.append(pd.DataFrame({"unique_id": f"{sid}_7", "ds": ds, "y": base * scale, "store_id": sid,
                                    "product_id": 7}))
    hist = pd.concat(frames, ignore_index=True)
    rows = hist[hist["ds"] >= "2023-04-01"][["unique_id", "ds"]]
    full = month_lag_features(hist, rows, [1, 2])
    cut = pd.Timestamp("2023-04-03")  # the latest origin whose 28-day-ahead forecasts reach 2023-04-30
    early = month_lag_features(hist[hist["ds"] <= cut], rows, [1, 2])
    pd.testing.assert_frame_equal(full, early)
    row = rows.index[(rows["unique_id"] == "1_7") & (rows["ds"] == "2023-04-20")][0]
    s = hist[hist["unique_id"] == "1_7"].set_index("ds")["y"]
    # 2023-03-20 over the mean of March up to 2023-03-23 (= 2023-04-20 - 28 days)
    assert full.loc[row, "ml1_series"] == pytest.approx(s["2023-03-20"] / s["2023-03-01":"2023-03-23"].mean())
    assert full.loc[row, "ml2_series"] == pytest.approx(s["2023-02-20"] / s["2023-02-01":"2023-02-28"].mean())
    # a ratio: ten times the sales (store 2), the same value at every level
    other = rows.index[(rows["unique_id"] == "2_7") & (rows["ds"] == "2023-04-20")][0]
    for c in ("ml1_series", "ml2_store", "ml_product"):
        assert full.loc[other, c] == pytest.approx(full.loc[row, c])
    # April 1-3 would see fewer than 7 days of March by then: no ratio rather than a noisy one
    assert (full["ml1_series"].isna() == (rows["ds"] < "2023-04-04")).all() and full["ml2_series"].notna().all()


def test_maven_train_forecast_plan_and_api(maven):
    """Train + promote + batch forecast + plan (no inventory history: it plans and says so) + the HTTP API."""
    from test_serving_support import start_server

    config = maven["config"]
    trained = _json(_cli(["train", "--json", "--config", config, "--features", maven["features"], "--db",
                          maven["db"]]))
    assert trained["version"] == 1 and trained["final"] == "blend"
    assert trained["metrics"]["final"]["wape"] < trained["metrics"]["seasonal_naive"]["wape"]
    decision = _json(_cli(["promote", "--json", "--config", config]))
    if not decision["promoted"]:  # ten weeks are little: the bias guard may refuse, saying so; then forced
        assert "outside the" in decision["reason"] and not decision["bias_ok"], decision
        decision = _json(_cli(["promote", "--json", "--force", "--config", config]))
    assert decision["promoted"], decision
    fc = _json(_cli(["forecast", "--json", "--config", config]))
    assert fc["model_version"] == "v1" and fc["data_date"] == "2023-03-11" and fc["stores"] == 3
    assert fc["first_date"] == "2023-03-12" and fc["series"] > 200
    # the batch applies the champion's trees to the feature store's newest days (month lags recomputed from them):
    # the same numbers as the registered model's own forecast from its training data
    from forecasting.config import load_settings
    from forecasting.source.forecast_cache import read_cache
    from training.batch import load_champion

    s = load_settings(config, environ={})
    champ = load_champion(s)
    assert champ.forecaster.lgbm_.month_lags == yaml.safe_load(OVERLAY.read_text())["training"]["month_lags"]
    own = champ.forecaster.predict().assign(date=lambda f: pd.to_datetime(f["ds"]))
    cached = read_cache(s.planning.forecasts_dir, "v1", date(2023, 3, 11)).frame
    cached = cached.assign(date=pd.to_datetime(cached["date"]))
    both = cached.merge(own, on=["store_id", "product_id", "date"], suffixes=("", "_own"))
    assert len(both) == len(cached) == len(own)
    np.testing.assert_allclose(both["mean"], both["mean_own"], rtol=1e-9, atol=1e-9)

    day = "2023-03-12"
    plan = _json(_cli(["plan", "--date", day, "--json", "--config", config]))
    assert plan["failures"] == {} and sorted(map(int, plan["stores"])) == MAVEN_STORES
    for sid, sp in plan["stores"].items():
        lines = pd.read_csv(sp["csv"])
        assert sp["lines"] == len(lines) >= 75 and (lines["material_id"].nunique() == len(lines))
        # no counts anywhere: on hand is 0, every line orders its window need and the plan says so once per store,
        # not as a stockout and a missing count on every line
        assert (lines["count_flag"] == "missing").all() and (lines["on_hand_used"] == 0).all()
        assert (lines["packs"] >= lines["demand_median"]).all() and (lines["packs"] > 0).mean() > 0.9
        assert lines["exceptions"].fillna("").eq("").all(), lines["exceptions"].value_counts()
        assert sp["exceptions"] <= 2
        html = Path(sp["html"]).read_text(encoding="utf-8")
        assert "No inventory counts for this store" in html, sid
    assert plan["written"]["inserted"] == sum(sp["lines"] for sp in plan["stores"].values())

    srv = start_server(config, maven["root"])
    try:
        st = srv.status()
        assert st["ready"] and st["model_version"] == "v1" and st["stores"] == MAVEN_STORES
        assert st["data_date"] == "2023-03-11" and st["order_dates"][0] == day
        inv = [{"material_id": 1, "on_hand": 500.0}, {"material_id": 2, "on_hand": 0.0}]
        r = srv.post("/replenishment", {"store_id": 5, "order_date": day, "inventory": inv})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["inventory_source"] == "request" and body["model_version"] == "v1"
        lines = {ln["material_id"]: ln for ln in body["lines"]}
        assert len(lines) == plan["stores"]["5"]["lines"]
        assert lines[1]["on_hand_used"] == 500.0 and lines[1]["qty_packs"] == 0 and lines[1]["count_flag"] == "ok"
        assert lines[2]["on_hand_used"] == 0.0 and lines[2]["inventory_position"] == 0.0
        assert all(ln["count_flag"] == "missing" for m, ln in lines.items() if m not in (1, 2))
        for ln in body["lines"]:
            assert ln["delivery_date"] >= day and ln["explanation"]
        top = max(lines.values(), key=lambda ln: ln["demand_mean"])
        assert top["demand_mean"] > 5 and top["qty_packs"] > 0
        end = (date.fromisoformat(day) + timedelta(days=2)).isoformat()
        r = srv.post("/forecast", {"store_id": 8, "product_ids": [top["material_id"]], "start_date": day, "days": 3,
                                   "quantiles": [0.5, 0.9]})
        assert r.status_code == 200, r.text
        days = r.json()["products"][0]["days"]
        assert [d["date"] for d in days][-1] == end and all(d["mean"] > 0 for d in days)
        assert all(d["quantiles"]["0.5"] <= d["quantiles"]["0.9"] for d in days)
        assert srv.post("/replenishment", {"store_id": 1, "order_date": day}).status_code == 404
    finally:
        srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]
