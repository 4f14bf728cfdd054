"""Demand-history cleansing (training.cleansing): abnormal store-days out of the lags, holidays left as sold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.config import CleansingConfig
from training.cleansing import cleanse, day_factors
from training.data import ModelFrame
from training.models import LGBMModel, future_frame

START = pd.Timestamp("2025-01-06")  # a Monday
DOW = np.array([1.0, 1.05, 1.1, 1.05, 0.95, 0.6, 0.5])


def panel(days: int = 140, stores: int = 3, products: int = 6, seed: int = 0,
          slump: tuple[int, int, float] | None = None, closed: tuple[int, int] | None = None,
          holidays: dict[int, float] | None = None) -> pd.DataFrame:
    """``unique_id, ds, y, store_id, product_id, is_holiday`` and the true mean ``mu``: weekly pattern, Poisson noise;
    ``slump`` (first day, last day, factor) chain-wide, ``closed`` (store, day) at 0, ``holidays`` day -> factor."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(START, periods=days, freq="D")
    day_f = np.ones(days)
    if slump:
        day_f[slump[0]:slump[1] + 1] = slump[2]
    hol = np.zeros(days, dtype=int)
    for d, f in (holidays or {}).items():
        day_f[d] *= f
        hol[d] = 1
    rows = []
    for s in range(1, stores + 1):
        level = 1.0 + 0.4 * s
        for p in range(1, products + 1):
            base = level * (2.0 + 2.5 * p)
            level_t = base * DOW[ds.dayofweek] * day_f
            mu = level_t.copy()
            if closed and closed[0] == s:
                mu[closed[1]] = 0.0
            rows.append(pd.DataFrame({"unique_id": f"{s}_{p}", "ds": ds, "y": rng.poisson(mu).astype(float),
                                      "store_id": s, "product_id": p, "is_holiday": hol,
                                      "mu": base * DOW[ds.dayofweek]}))
    return pd.concat(rows, ignore_index=True)


def test_an_ordinary_log_is_left_as_it_is():
    df = panel()
    f = day_factors(df)
    assert not f["flagged"].any()
    assert np.array_equal(cleanse(df, f), df["y"].to_numpy())


def test_a_slump_week_and_a_closure_are_cleansed_with_the_day_s_product_mix_kept():
    df = panel(slump=(70, 76, 0.45), closed=(2, 100))
    f = day_factors(df)
    flagged = f[f["flagged"]]
    slump_days = set(pd.date_range(START + pd.Timedelta(days=70), periods=7))
    assert slump_days <= set(flagged["ds"])
    assert ((flagged["store_id"] == 2) & (flagged["ds"] == START + pd.Timedelta(days=100))).any()
    assert len(set(flagged["ds"]) - slump_days) <= 1  # the closure; no ordinary day
    y = cleanse(df, f)
    d = df.assign(clean=y)
    week = d[d["ds"].isin(slump_days)]
    # the week's cleansed total is back near the true level (it was 45% of it)
    assert abs(week["clean"].sum() / week["mu"].sum() - 1) < 0.1
    assert week["y"].sum() / week["mu"].sum() < 0.5
    # one store-day's products are divided by one ratio: its mix stays as sold
    one = week[(week["store_id"] == 1) & (week["ds"] == START + pd.Timedelta(days=72)) & (week["y"] > 0)]
    assert np.ptp((one["clean"] / one["y"]).to_numpy()) < 1e-9
    # the closed day gets the series' same-weekday level, not zero
    c = d[(d["store_id"] == 2) & (d["ds"] == START + pd.Timedelta(days=100))]
    assert (c["y"] == 0).all()
    assert abs(c["clean"].sum() / c["mu"].sum() - 1) < 0.15


def test_calendar_holidays_are_left_as_sold_and_kept_out_of_their_neighbours_expectations():
    df = panel(days=150, holidays={40: 0.5, 75: 0.0, 110: 0.5}, slump=(82, 82, 0.4))
    f = day_factors(df)
    assert not f.loc[f["holiday"], "flagged"].any()  # the trees learn them from is_holiday
    assert f.loc[f["ds"] == START + pd.Timedelta(days=82), "flagged"].all()  # a week after the closed holiday
    y = cleanse(df, f)
    hol = df["is_holiday"].to_numpy() > 0
    assert np.array_equal(y[hol], df["y"].to_numpy()[hol])
    # the slump a week after the (closed) holiday is measured against normal days: about its true 0.4
    r = f.loc[(f["ds"] == START + pd.Timedelta(days=82)), "ratio"]
    assert 0.3 < r.mean() < 0.5


def test_the_day_after_a_holiday_is_left_with_it_unless_configured_otherwise():
    """A bridge day (the Friday after Thanksgiving) is part of the holiday's pattern the trees learn."""
    df = panel(days=120, holidays={60: 0.0}, slump=(61, 61, 0.45))
    day = START + pd.Timedelta(days=61)
    with_it = day_factors(df, CleansingConfig(holiday_days_around=1))
    apart = day_factors(df, CleansingConfig(holiday_days_around=0))
    assert not with_it.loc[with_it["ds"] == day, "flagged"].any()
    assert apart.loc[apart["ds"] == day, "flagged"].all()


def _model(train: ModelFrame, cleansing: CleansingConfig | None) -> LGBMModel:
    params = {"n_estimators": 60, "num_leaves": 15, "min_child_samples": 10, "learning_rate": 0.1}
    return LGBMModel(params, lags=[1, 7, 14, 21, 28], strategy="recursive", horizon=14, cleansing=cleansing).fit(train)


def _frame(df: pd.DataFrame, cutoff: int) -> ModelFrame:
    d = df[df["ds"] <= START + pd.Timedelta(days=cutoff)].drop(columns=["mu"])
    d = d.assign(y_filled=d["y"], censored=False, weight=1.0)
    return ModelFrame(d, ["store_id", "product_id"], ["is_holiday"], {})


def test_after_a_slump_the_cleansed_model_keeps_the_level_and_still_learns_holidays():
    cutoff = 125
    df = panel(days=140, slump=(cutoff - 12, cutoff - 6, 0.45), holidays={30: 0.5, 60: 0.5, 90: 0.5, 131: 0.5})
    train = _frame(df, cutoff)
    ids = sorted(train.df["unique_id"].unique())
    fut = future_frame(train, ids, 14)
    fut["is_holiday"] = fut["ds"].eq(START + pd.Timedelta(days=131)).astype(int)
    truth = df[df["ds"] > START + pd.Timedelta(days=cutoff)].assign(
        mu=lambda x: x["mu"] * np.where(x["is_holiday"] > 0, 0.5, 1.0))
    err = {}
    for name, rule in (("raw", None), ("cleansed", CleansingConfig())):
        m = _model(train, rule)
        p = m.predict(14, fut, ids).merge(truth[["unique_id", "ds", "mu"]], on=["unique_id", "ds"])
        normal = p[p["ds"] != START + pd.Timedelta(days=131)]
        err[name] = abs(normal["lightgbm"].sum() / normal["mu"].sum() - 1)
        if rule is not None:
            hol = p[p["ds"] == START + pd.Timedelta(days=131)]
            normal_level = 2 * hol["mu"].sum()  # the truth there is half the normal level
            assert hol["lightgbm"].sum() / normal_level < 0.8  # the dip is learnt from is_holiday
    assert err["cleansed"] < 0.06
    assert err["cleansed"] < err["raw"]


def test_newer_history_is_cleansed_as_the_fitted_model_s_so_batch_and_backtest_agree():
    """The batch hands the fitted trees the last 120 days (``new_df``); with a slump in them, they must be cleansed
    with the fitted thresholds, giving the forecast the model makes from its own (whole, cleansed) history."""
    cutoff = 125
    df = panel(days=140, slump=(cutoff - 12, cutoff - 6, 0.45), holidays={30: 0.5, 60: 0.5, 90: 0.5})
    train = _frame(df, cutoff)
    ids = sorted(train.df["unique_id"].unique())
    fut = future_frame(train, ids, 14)
    m = _model(train, CleansingConfig())
    own = m.predict(14, fut, ids)
    recent = train.df[train.df["ds"] > train.last_date - pd.Timedelta(days=120)]
    new_df = recent[["unique_id", "ds", "y", "store_id", "product_id", "is_holiday"]]
    batch = m.predict(14, fut, new_df=new_df)
    j = own.merge(batch, on=["unique_id", "ds"], suffixes=("_own", "_batch"))
    assert len(j) == len(own)
    np.testing.assert_allclose(j["lightgbm_batch"], j["lightgbm_own"], rtol=1e-6, atol=1e-6)


def test_the_setting_is_off_by_default_and_reaches_both_global_models_when_on():
    from forecasting.config import TrainingConfig
    from training.cleansing import rule_from
    from training.forecaster import month_model

    assert rule_from(TrainingConfig()) is None
    on = TrainingConfig(cleansing={"enabled": True, "z": 4.0, "holiday_days_around": 0})
    rule = rule_from(on)
    assert rule == CleansingConfig(enabled=True, z=4.0, holiday_days_around=0)
    assert month_model(on, {}, 14).cleansing == rule
