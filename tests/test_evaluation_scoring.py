"""Honest scoring: realised demand on every day, the oracle as the true distribution, material error at cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting import uncertainty as unc
from forecasting.config import TrainingConfig
from forecasting.evaluation.metrics import (
    against,
    at_cost,
    mean_interval,
    paired_difference,
    score,
    with_true_distribution,
)
from training.backtest import Backtester, add_intervals
from training.data import ModelFrame
from training.source import EvalSources

ALPHA = 1 / 12
QS = [0.5, 0.8, 0.9, 0.95, 0.99]


def _world(seed: int = 0, n_series: int = 40, days: int = 70, horizon: int = 14):
    """History and one scored window of NB demand around known means; the top quarter of each series' days stock
    out (sales cut to 60%): the censored days are the high-demand ones, as in the generator."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2025-09-01", periods=days + horizon, freq="D")
    rows = []
    for i in range(n_series):
        base = rng.uniform(0.5, 30)
        mu = base * (1 + 0.3 * np.sin(2 * np.pi * np.arange(len(ds)) / 7))
        real = rng.poisson(mu * rng.gamma(1 / ALPHA, ALPHA, len(ds))).astype(float)
        cens = real > np.quantile(real, 0.75)
        y = np.where(cens, np.floor(real * 0.6), real)
        rows.append(pd.DataFrame({"unique_id": f"1_{i + 1}", "store_id": 1, "product_id": i + 1, "ds": ds, "y": y,
                                  "censored": cens, "realised": real, "mu": mu}))
    df = pd.concat(rows, ignore_index=True)
    cutoff = ds[days - 1]
    return df, cutoff


def _preds(df: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    p = df[df["ds"] > cutoff].copy()
    p["cutoff"] = cutoff
    p["horizon"] = (p["ds"] - cutoff).dt.days
    p["segment"] = "fast"
    p["lightgbm"] = p["mu"]  # a model that forecasts the true mean
    p["incumbent"] = p["mu"] * 0.85  # one biased low, like a rule trained on censored sales
    p["oracle"] = p["mu"]
    p["final"] = p["lightgbm"]
    params = {m: {"all": (ALPHA, 0.0)} for m in ("lightgbm", "incumbent", "oracle", "final")}
    return add_intervals(p.drop(columns=["realised"]), params, QS, seed=1)


def _backtester(sources: EvalSources) -> Backtester:
    return Backtester(TrainingConfig(final="lightgbm", quantiles=QS), sources=sources, with_stats=False)


def test_true_median_is_the_wape_floor_and_true_quantiles_the_pinball_floor():
    rng = np.random.default_rng(3)
    mu = np.repeat(rng.uniform(0.3, 20, 400), 30)
    y = rng.poisson(mu * rng.gamma(1 / ALPHA, ALPHA, len(mu))).astype(float)
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(400), 30).astype(str), "ds": np.tile(
        pd.date_range("2025-01-01", periods=30), 400), "cutoff": pd.Timestamp("2024-12-31"), "y": y,
        "mean": mu, "low": 0.95 * mu})
    train = df[["unique_id", "ds", "y"]].assign(ds=df["ds"] - pd.Timedelta(days=30))
    df = with_true_distribution(df, "oracle", mu, ALPHA, QS)
    for q in QS:  # a forecaster with the right mean but too narrow a spread
        df[f"mean-q{q}"] = unc.nb_quantile(mu, ALPHA / 4, q)
    s = score(df, ["oracle", "mean", "low"], train, QS)
    assert s["oracle"]["wape"] < s["mean"]["wape"] and s["oracle"]["wape"] < s["low"]["wape"]
    assert s["oracle"]["spl"] < s["mean"]["spl"]
    assert (df["oracle-q0.5"] <= np.ceil(mu)).all()  # the NB median sits at or below the mean
    assert np.allclose(df["oracle"], mu) and s["oracle"]["wape_mean"] > s["oracle"]["wape"]


def test_wape_scores_every_model_on_its_predictive_median_and_bias_on_its_mean():
    rng = np.random.default_rng(5)
    mu = np.repeat(rng.uniform(0.3, 6, 200), 20)  # slow items: the NB median sits well below the mean
    y = rng.poisson(mu * rng.gamma(1 / ALPHA, ALPHA, len(mu))).astype(float)
    df = pd.DataFrame({"unique_id": np.repeat(np.arange(200), 20).astype(str), "ds": np.tile(
        pd.date_range("2025-01-01", periods=20), 200), "cutoff": pd.Timestamp("2024-12-31"), "y": y, "m": mu})
    df["m-q0.5"] = unc.nb_quantile(mu, ALPHA, 0.5)
    s = score(df, ["m"], None, [0.5])["m"]
    assert s["wape"] == pytest.approx(np.abs(df["m-q0.5"] - y).sum() / y.sum())
    assert s["wape_mean"] == pytest.approx(np.abs(mu - y).sum() / y.sum())
    assert s["wape"] < s["wape_mean"]
    assert s["bias"] == pytest.approx((mu - y).sum() / y.sum())
    assert score(df.drop(columns="m-q0.5"), ["m"])["m"]["wape"] == pytest.approx(s["wape_mean"])


def test_synthetic_scored_against_realised_every_day_with_observed_beside():
    df, cutoff = _world()
    truth = df.rename(columns={"mu": "expected_qty", "realised": "realised_qty"})[
        ["store_id", "product_id", "ds", "expected_qty", "realised_qty"]]
    bt = _backtester(EvalSources(truth=truth, truth_alpha=ALPHA))
    frame = ModelFrame(df[df["ds"] <= cutoff][["unique_id", "ds", "y", "censored", "store_id", "product_id"]])
    preds = _preds(df, cutoff)
    res, final = bt.summarize(frame, preds, ["lightgbm", "incumbent", "oracle"], 14)
    m = res["models"]
    assert res["scored_against"].startswith("realised demand") and final == "final"
    assert m["final"]["n"] == len(preds)  # every day, the censored ones included
    # the true mean is unbiased against realised demand, but looks biased high against sales of uncensored days
    assert abs(m["lightgbm"]["bias"]) < 0.03
    assert res["observed_uncensored"]["models"]["lightgbm"]["bias"] > m["lightgbm"]["bias"] + 0.05
    assert res["observed_uncensored"]["n"] == int((~preds["censored"]).sum())
    assert res["censored"]["share"] == pytest.approx(preds["censored"].mean(), abs=1e-4)
    # the oracle (true median, true quantiles) is a floor for the true mean and for the low rule
    for k in ("wape", "spl"):
        assert m["oracle"][k] <= m["lightgbm"][k] and m["oracle"][k] < m["incumbent"][k]
    assert "median" in res["oracle"]
    assert 0.7 < m["oracle"]["coverage_80"] < 0.9  # the true distribution covers as it should


def test_real_log_scores_uncensored_days_and_reports_the_censored_share():
    df, cutoff = _world(seed=1)
    frame = ModelFrame(df[df["ds"] <= cutoff][["unique_id", "ds", "y", "censored", "store_id", "product_id"]])
    preds = _preds(df, cutoff).drop(columns=["oracle"])
    res, _ = _backtester(EvalSources()).summarize(frame, preds, ["lightgbm", "incumbent"], 14)
    n_cens = int(preds["censored"].sum())
    assert res["scored_against"].startswith("observed sales, uncensored")
    assert res["models"]["final"]["n"] == len(preds) - n_cens
    assert res["censored"]["n"] == n_cens and res["censored"]["share"] == pytest.approx(n_cens / len(preds), 1e-3)
    assert "observed_uncensored" not in res and "oracle" not in res


def test_material_error_is_weighted_by_unit_cost():
    df, cutoff = _world(seed=2, n_series=2)
    frame = ModelFrame(df[df["ds"] <= cutoff][["unique_id", "ds", "y", "censored", "store_id", "product_id"]])
    preds = _preds(df, cutoff)
    # product 1: 18 g beans at $0.02/g; product 2: one sandwich at $2.50 (grams and pieces never added)
    bom = pd.DataFrame({"product_id": [1, 2], "material_id": [10, 20], "qty_per_unit": [18.0, 1.0],
                        "unit_cost": [0.02, 2.5]})
    res, _ = _backtester(EvalSources(bom=bom)).summarize(frame, preds, ["lightgbm", "incumbent"], 14)
    main = preds[~preds["censored"]]  # no realised demand in this source: uncensored days, observed sales
    cost = main["product_id"].map({1: 18 * 0.02, 2: 2.5})
    expect = ((main["incumbent"] - main["y"]).abs() * cost).sum() / (main["y"] * cost).sum()
    assert res["material"]["units"].startswith("value at unit cost")
    assert res["material"]["models"]["incumbent"]["wape"] == pytest.approx(expect, rel=1e-9)
    grams = ((main["incumbent"] - main["y"]).abs() * main["product_id"].map({1: 18.0, 2: 1.0})).sum() / (
        main["y"] * main["product_id"].map({1: 18.0, 2: 1.0})).sum()
    assert res["material"]["models"]["incumbent"]["wape"] != pytest.approx(grams, rel=1e-3)


def test_against_moves_the_jittered_actual_with_the_target():
    df = pd.DataFrame({"y": [3.0, 0.0], "y_jit": [2.4, -0.7], "realised": [5.0, 1.0]})
    out = against(df, "realised")
    assert out["y"].tolist() == [5.0, 1.0] and out["y_jit"].tolist() == pytest.approx([4.4, 0.3])
    assert at_cost(pd.DataFrame({"y": [2.0], "unit_cost": [1.5]}), ["y"])["y"].item() == 3.0


def test_paired_difference_cancels_the_shared_noise():
    rng = np.random.default_rng(0)
    level = rng.normal(100, 10, 5)  # what the seed does to both policies
    a, b = level * 1.10, level
    d = paired_difference(a, b)
    unpaired = mean_interval(a)["hi"] - mean_interval(a)["lo"]
    assert d["lo"] < d["mean"] < d["hi"] and d["hi"] - d["lo"] < unpaired
    assert mean_interval(np.array([4.0]))["lo"] == 4.0
