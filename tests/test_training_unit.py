"""Uncertainty maths, the model-input adapter, segments and the incumbent rule (fast, no model fitting)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from forecasting import uncertainty as unc
from training.data import known_in_advance, segment_series, to_model_frame
from training.models import same_weekday_mean
from training.synthetic import SYNTHETIC_KNOWN, synthetic_daily, synthetic_manifest


def test_nb_quantile_matches_moments():
    mu, alpha = 4.0, 0.5
    q = unc.nb_quantile(np.array([mu]), alpha, 0.9)[0]
    n, p = 1 / alpha, 1 / (1 + alpha * mu)
    assert stats.nbinom.mean(n, p) == pytest.approx(mu)
    assert stats.nbinom.var(n, p) == pytest.approx(mu + alpha * mu**2)
    assert q == stats.nbinom.ppf(0.9, n, p)


def test_fit_dispersion_recovers_alpha():
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.5, 20, 20000)
    y = rng.poisson(mu * rng.gamma(1 / 0.3, 0.3, mu.size))
    assert unc.fit_dispersion(y, mu) == pytest.approx(0.3, rel=0.1)
    assert unc.fit_dispersion(rng.poisson(mu), mu) < 0.02  # Poisson data -> almost no extra dispersion


def test_interp_quantiles_give_nominal_randomized_coverage_for_slow_items():
    """Integer intervals over-cover slow items; the continuous ones scored on y - u are exact."""
    rng = np.random.default_rng(2)
    mu = rng.uniform(0.2, 3, 40000)
    alpha = 0.4
    n, p = 1 / alpha, 1 / (1 + alpha * mu)
    y = stats.nbinom.rvs(n, p, random_state=rng)
    lo, hi = unc.nb_interp_quantile(mu, alpha, 0.1), unc.nb_interp_quantile(mu, alpha, 0.9)
    y_jit = y - rng.random(y.size)
    assert ((y_jit >= lo) & (y_jit <= hi)).mean() == pytest.approx(0.8, abs=0.01)
    int_cov = ((y >= unc.nb_quantile(mu, alpha, 0.1)) & (y <= unc.nb_quantile(mu, alpha, 0.9))).mean()
    assert int_cov > 0.85


def test_sample_paths_match_closed_form_window_variance():
    mean = np.array([3.0, 5.0, 8.0, 2.0, 6.0])
    paths = unc.sample_paths(mean, alpha=0.3, shared=0.1, n_paths=60000, seed=3)
    totals = paths.sum(axis=1)
    assert totals.mean() == pytest.approx(mean.sum(), rel=0.02)
    assert totals.var() == pytest.approx(unc.window_variance(mean, 0.3, 0.1), rel=0.05)
    # a shared level error widens the window: independent days would understate the high quantile
    q_shared = unc.window_quantiles(mean, 0.3, 0.95, shared=0.2, seed=4)[0.95]
    q_indep = unc.window_quantiles(mean, 0.3, 0.95, shared=0.0, seed=4)[0.95]
    assert q_shared > q_indep
    qs = unc.window_quantiles(mean, 0.3, seed=5)
    assert list(qs) == list(unc.QUANTILES) and all(np.diff(list(qs.values())) >= 0)
    assert unc.window_quantiles(mean, 0.3, 0.5, days=2, seed=5)[0.5] < qs[0.5]


def test_fit_shared_variance_recovers_level_error():
    rng = np.random.default_rng(6)
    mu = rng.uniform(2, 10, (4000, 7))
    level = rng.gamma(1 / 0.15, 0.15, (4000, 1))
    a = (0.3 - 0.15) / 1.15
    y = rng.poisson(mu * level * rng.gamma(1 / a, a, mu.shape))
    b = unc.fit_shared_variance(y.sum(1), mu.sum(1), (mu**2).sum(1), alpha=0.3)
    assert b == pytest.approx(0.15, abs=0.04)


def test_adapter_roles_censoring_and_trimming():
    d = synthetic_daily(n_stores=2, n_products=4, days=70, censor_rate=0.1, seed=0)
    fr = to_model_frame(d, synthetic_manifest(d))
    assert set(fr.exog) == set(SYNTHETIC_KNOWN)  # observed weather is not known in advance
    assert "temperature" not in fr.exog and fr.static[:2] == ["store_id", "product_id"]
    c = fr.df[fr.df["censored"]]
    assert len(c) > 0 and (c["y_filled"] >= c["y"]).all() and (c["y_filled"] > c["y"]).any()
    assert (fr.df.loc[~fr.df["censored"], "y_filled"] == fr.df.loc[~fr.df["censored"], "y"]).all()
    first = fr.df.groupby("unique_id").first()
    assert (first["y"] > 0).all()  # leading days before the first sale are trimmed


def test_known_in_advance_accepts_list_registry_and_falls_back_to_names():
    cols = ["is_holiday", "temperature", "coupon_campaign"]
    reg = {"features": [{"name": "is_holiday", "known_in_advance": True}, {"name": "temperature"}]}
    assert known_in_advance(reg, cols) == ["is_holiday"]
    assert known_in_advance({}, cols) == ["is_holiday", "coupon_campaign"]


def test_segments_flag_new_store_new_product_and_intermittent():
    d = synthetic_daily(n_stores=3, n_products=8, days=150, seed=0)
    fr = to_model_frame(d, synthetic_manifest(d))
    seg = segment_series(fr.df)
    assert (seg[[i for i in seg.index if i.startswith("3_")]] == "new_store").all()  # store 3 opens at day 100
    assert seg["1_8"] != "new_product"  # product 8 launched 75 days before the end: older than new_days=56
    early = segment_series(fr.df, cutoff=fr.df["ds"].min() + pd.Timedelta(days=100))
    assert early["1_8"] == "new_product"
    assert (seg[[i for i in seg.index if i.endswith("_4") and not i.startswith("3_")]] == "intermittent").all()


def test_same_weekday_mean_is_the_incumbent_rule():
    ds = pd.date_range("2026-01-01", periods=35, freq="D")
    y = np.arange(35, dtype=float)
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": y, "y_filled": y, "censored": False})
    from training.data import ModelFrame

    out = same_weekday_mean(ModelFrame(df), ["a"], 8)
    # target day +k: same weekday at last - (7 - k % 7) % 7 - 7i, i = 0..3 (last index 34)
    for k in range(1, 9):
        back = (7 - k % 7) % 7
        want = np.mean([34 - back - 7 * i for i in range(4)])
        assert out.loc[k - 1, "incumbent"] == pytest.approx(want)
    assert out["ds"].iloc[0] == ds[-1] + pd.Timedelta(days=1)


def _windows(rng: np.random.Generator, n_series: int = 80, cutoffs: int = 3, h: int = 7) -> pd.DataFrame:
    """Out-of-sample rows: per series a level; ``a`` knows the level in "fast", ``b`` in "intermittent", ``c`` knows
    it everywhere but forecasts 20% low (the median-ish forecast WAPE likes)."""
    rows = []
    for i in range(n_series):
        seg = "fast" if i % 2 == 0 else "intermittent"
        lvl = rng.uniform(3, 12)
        for k in range(cutoffs):
            cut = pd.Timestamp("2025-03-01") + pd.Timedelta(days=7 * k)
            y = rng.poisson(lvl, h).astype(float)
            noisy = lvl * rng.uniform(0.5, 1.5)
            rows.append(pd.DataFrame({
                "unique_id": f"s{i}", "cutoff": cut, "ds": cut + pd.to_timedelta(np.arange(1, h + 1), unit="D"),
                "horizon": np.arange(1, h + 1), "y": y, "y_filled": y, "censored": False, "segment": seg,
                "a": lvl if seg == "fast" else noisy, "b": lvl if seg == "intermittent" else noisy, "c": 0.8 * lvl}))
    return pd.concat(rows, ignore_index=True)


def test_blend_weights_by_window_pinball_with_bias_guard_and_shrinkage():
    from training.blend import apply_weights, learn_weights

    rows = _windows(np.random.default_rng(0))
    report: dict = {}
    w = learn_weights(rows, ["a", "b", "c"], ("fast", "intermittent", "slow"), shrink_windows=20, report=report)
    assert max(w["fast"], key=w["fast"].get) == "a" and max(w["intermittent"], key=w["intermittent"].get) == "b"
    assert report["all"]["bias"]["c"] == pytest.approx(-0.2, abs=0.03)
    assert all("c" not in v for v in w.values())  # -20% on window totals: outside the 10% bias guard
    assert "slow" not in w  # no rows: the "all" weights apply
    assert all(abs(sum(v.values()) - 1) < 1e-9 for v in w.values())
    # shrinkage: a segment's weights lie between its own choice and the pooled weights
    pooled = max(w["all"], key=w["all"].get)
    other = "intermittent" if pooled == "a" else "fast"
    assert 0 < w[other][pooled] < w["all"][pooled]
    with pytest.raises(ValueError, match=">= 3 inner windows"):
        learn_weights(rows[rows["cutoff"] == rows["cutoff"].min()], ["a", "b"], ("fast",))
    new = pd.DataFrame({"segment": ["fast", "slow"], "a": [1.0, 1.0], "b": [3.0, 3.0], "c": [9.0, 9.0]})
    out = apply_weights(new, {"fast": {"a": 1.0}, "all": {"a": 0.5, "b": 0.5}})
    assert out.tolist() == [1.0, 2.0]


def test_greedy_selection_combines_candidates_with_independent_errors():
    """Two unbiased candidates with independent level errors: their average beats either on window totals, so
    the greedy selection weighs both (the tolerance rule gives the better one everything once the other is 5% worse)."""
    from training.blend import learn_weights, window_losses, window_tables

    rng = np.random.default_rng(1)
    rows = _windows(rng, n_series=120)
    lvl = rows.groupby(["unique_id", "cutoff"])["c"].transform("first") / 0.8
    key = rows.groupby(["unique_id", "cutoff"]).ngroup().to_numpy()
    rows["d"] = lvl * rng.lognormal(0, 0.3, key.max() + 1)[key]
    rows["e"] = lvl * rng.lognormal(0, 0.45, key.max() + 1)[key]
    w = learn_weights(rows, ["d", "e"], (), steps=10)["all"]
    assert set(w) == {"d", "e"} and 0.1 <= w["e"] <= 0.5 and sum(w.values()) == pytest.approx(1)
    rows["mix"] = w["d"] * rows["d"] + w["e"] * rows["e"]
    tabs = window_tables(rows, ["d", "e", "mix"], (2, 7))
    loss = {m: window_losses(tabs, m, [0.9, 0.95, 0.97])[0] for m in ("d", "e", "mix")}
    assert loss["mix"] < min(loss["d"], loss["e"])
    old = learn_weights(rows, ["d", "e"], (), method="tolerance")["all"]
    assert old == {"d": 1.0}  # e is more than 5% worse alone: the tolerance rule drops what it adds


def test_direct_strategy_sees_the_target_weekday():
    """mlforecast's date features are the origin's in direct training but the target's at prediction; with a lag
    that carries no weekday information the direct model must still find the Saturday peak (calendar as exog)."""
    from training.data import ModelFrame
    from training.models import LGBMModel

    rng = np.random.default_rng(1)
    ds = pd.date_range("2025-01-06", periods=126, freq="D")
    rows = []
    for i in range(12):
        mu = (2.0 + i) * np.where(ds.dayofweek == 5, 3.0, 1.0)
        y = rng.poisson(mu).astype(float)
        rows.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y, "y_filled": y, "censored": False,
                                  "store_id": 1, "product_id": i}))
    df = pd.concat(rows, ignore_index=True)
    train = ModelFrame(df[df["ds"] <= ds[-8]], ["store_id", "product_id"], [])
    fut = pd.DataFrame({"unique_id": np.repeat([f"s{i}" for i in range(12)], 7),
                        "ds": np.tile(ds[-7:], 12)})
    params = {"n_estimators": 60, "num_leaves": 7, "min_child_samples": 10}
    preds = {}
    for strategy in ("recursive", "direct"):
        m = LGBMModel(params, lags=[14], strategy=strategy, horizon=7, num_threads=1).fit(train)
        preds[strategy] = m.predict(7, fut).merge(df, on=["unique_id", "ds"])
    for p in preds.values():
        sat = p["ds"].dt.dayofweek == 5
        assert p.loc[sat, "lightgbm"].mean() > 2.2 * p.loc[~sat, "lightgbm"].mean()


def test_month_lags_refuse_a_horizon_they_cannot_see():
    from forecasting.errors import ConfigError
    from training.models import MONTH_LAG_INFO_DAYS, LGBMModel

    with pytest.raises(ConfigError, match="known only"):
        LGBMModel(horizon=MONTH_LAG_INFO_DAYS + 1, month_lags=[1])
    assert LGBMModel(horizon=MONTH_LAG_INFO_DAYS, month_lags=[1]).month_lags == [1]


def test_hourly_profile_for_unconstraining_reads_earlier_months_only():
    """A censored day's share before the stockout comes from the months before it: changing later hours (or the
    day's own month) does not move it; the first month has no profile (imputed instead)."""
    from training.data import hourly_profiles_before, share_before_stockout

    days = pd.date_range("2025-01-01", "2025-03-31", freq="D")
    rows = [(1, d, hr, 10 if hr < 12 else 1) for d in days for hr in range(8, 20)]
    hourly = pd.DataFrame(rows, columns=["store_id", "date", "local_hour", "qty"])
    prof = hourly_profiles_before(hourly)
    assert sorted(prof.index.get_level_values("month").astype(str).unique()) == ["2025-02", "2025-03"]
    later = hourly.copy()
    later.loc[later["date"] >= "2025-03-01", "qty"] = 100  # March's own hours change: March's profile does not
    np.testing.assert_allclose(hourly_profiles_before(later).loc["2025-03"].to_numpy(), prof.loc["2025-03"].to_numpy())
    daily = pd.DataFrame({"store_id": [1, 1], "date": pd.to_datetime(["2025-01-20", "2025-03-10"]),
                          "censored": [True, True], "stockout_hours": [6.0, 6.0]})
    share = share_before_stockout(daily, prof)
    assert np.isnan(share.iloc[0])  # January: no earlier month
    assert share.iloc[1] == pytest.approx(42 / 48)  # out for the last 6 open hours (1 unit each of 48 a day)


def test_promote_compares_wape_as_the_champion_run_scored_it():
    """A champion logged before ``wape_mean`` scored ``wape`` on the mean: the challenger's mean WAPE is compared."""
    from training.pipeline import _same_wape

    ch = {"wape": 0.40, "wape_mean": 0.42}
    assert _same_wape(ch, {"wape": 0.43, "wape_mean": float("nan")})["wape"] == 0.42
    assert _same_wape(ch, {"wape": 0.41, "wape_mean": 0.43})["wape"] == 0.40
    assert _same_wape({"wape": 0.40, "wape_mean": float("nan")}, {"wape": 0.41})["wape"] == 0.40


def test_the_blend_weighs_only_the_configured_candidates():
    """``training.selection.candidates`` limits what the final blend may weigh (the shipped default: the global
    models); the other models are still run and scored as baselines. Empty: every candidate."""
    from forecasting.config import TrainingConfig
    from training.backtest import Backtester

    every = Backtester(TrainingConfig.model_validate({"selection": {"candidates": []}}))
    assert {"auto_ets", "croston", "twoway", "lightgbm"} <= set(every.candidates)
    few = Backtester(TrainingConfig.model_validate({"selection": {"candidates": ["lightgbm", "twoway"]}}))
    assert few.candidates == ["lightgbm", "twoway"]
    assert {"auto_ets", "croston"} <= set(few.models)  # still scored
    from forecasting.config import load_settings

    shipped = load_settings().training.selection.candidates
    assert shipped and not {"auto_ets", "croston", "incumbent", "seasonal_naive"} & set(shipped)
    from typing import get_args

    from forecasting.config import SelectionConfig
    from training.blend import CANDIDATES

    names = get_args(get_args(SelectionConfig.model_fields["candidates"].annotation)[0])
    assert set(names) == set(CANDIDATES)  # the config accepts exactly the blend's candidates


def test_a_short_history_gets_as_many_blend_windows_as_it_holds_but_never_fewer_than_three():
    """Six inner windows (the default) need months before the first origin; a short log gets fewer, down to three,
    and says so; shorter than that is one clear DataError."""
    from forecasting.config import TrainingConfig
    from forecasting.errors import DataError
    from training.backtest import MIN_BLEND_WINDOWS, Backtester

    cfg = TrainingConfig.model_validate({"blend_windows": 6})
    said: list[str] = []
    for days, expect in ((140, 6), (70, None)):
        d = synthetic_daily(n_stores=1, n_products=2, days=days, seed=3)
        fr = to_model_frame(d, synthetic_manifest(d))
        bt = Backtester(cfg, progress=said.append)
        bt.cutoffs(fr, 1, 7, 7)
        if expect is not None:
            assert bt.blend_windows == expect
        else:
            assert MIN_BLEND_WINDOWS <= bt.blend_windows < 6 and "inner windows" in said[-1]
    d = synthetic_daily(n_stores=1, n_products=2, days=50, seed=3)
    with pytest.raises(DataError, match="too few"):
        Backtester(cfg).cutoffs(to_model_frame(d, synthetic_manifest(d)), 1, 7, 7)


def test_inner_windows_that_only_teach_the_blend_skip_the_statistical_fit_and_change_nothing():
    """With global candidates, an inner window beyond the calibration ones needs no AutoETS / Croston fit (the
    blend weighs none of them): the backtest skips it there, and its final forecast is exactly the same."""
    from forecasting.config import TrainingConfig
    from training.backtest import Backtester

    d = synthetic_daily(n_stores=2, n_products=3, days=150, seed=5)
    fr = to_model_frame(d, synthetic_manifest(d))
    cfg = TrainingConfig.model_validate({"blend_windows": 4, "horizon": 7, "origins": 2, "run_ets": True,
                                         "selection": {"candidates": ["lightgbm", "twoway"]}})
    params = {**cfg.lgbm, "n_estimators": 20}

    class AlwaysStats(Backtester):
        def forecast_at(self, frame, cutoff, h, stats=True):
            return super().forecast_at(frame, cutoff, h, True)

    lean, full = Backtester(cfg, params), AlwaysStats(cfg, params)
    a, b = lean.run(fr), full.run(fr)
    assert set(lean._stats_done) < set(full._stats_done)  # some inner windows went without the statistical fit
    pd.testing.assert_series_equal(a.preds["final"], b.preds["final"])
    assert a.metrics["models"]["final"]["wape"] == b.metrics["models"]["final"]["wape"]
