"""One future: the backtest and the batch forecast build the same future inputs and give the same forecast.

A small synthetic panel whose known inputs (US + NY holidays, product campaign windows, store opens, product
launches) come from the planned calendar in its manifest, as the feature build writes it.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from forecasting.config import load_settings
from training.backtest import Backtester
from training.batch import forecast_from
from training.data import to_model_frame
from training.forecaster import DemandForecaster, final_mean
from training.future import PlannedCalendar, future_frame
from training.synthetic import synthetic_daily, synthetic_manifest

H = 7
WEIGHTS = {"all": {"lightgbm": 0.3, "lightgbm_month": 0.2, "auto_ets": 0.2, "croston": 0.1, "weekday_mean": 0.2}}


def _cfg():
    s = load_settings(environ={})
    return s.training.model_copy(update={
        "horizon": H, "num_threads": 1, "tuned_params": None, "strategy": "recursive",
        "lgbm": {**s.training.lgbm, "n_estimators": 30, "num_leaves": 15}})


@pytest.fixture(scope="module")
def panel():
    d = synthetic_daily(n_stores=2, n_products=5, days=105, censor_rate=0.05, seed=5)
    return d, to_model_frame(d, synthetic_manifest(d))


def _campaign_cutoff(manifest: dict) -> pd.Timestamp:
    """A day inside a campaign window that still has campaign days after it."""
    for c in manifest["calendar"]["campaigns"]:
        lo, hi = pd.Timestamp(c["valid_from"]), pd.Timestamp(c["valid_to"])
        if (hi - lo).days >= 3 and lo >= pd.Timestamp("2025-07-20") and hi <= pd.Timestamp("2025-08-25"):
            return lo + pd.Timedelta(days=1)
    raise AssertionError("no campaign window to test")


def _cutoffs(fr) -> dict[str, pd.Timestamp]:
    return {"holiday": pd.Timestamp("2025-09-01"), "campaign": _campaign_cutoff(fr.manifest)}


def test_future_inputs_come_from_the_calendar_not_the_last_day(panel):
    d, fr = panel
    for name, cut in _cutoffs(fr).items():
        train = fr.until(cut)
        ids = sorted(train.df.loc[train.df["ds"] == cut, "unique_id"].unique())
        fut = future_frame(train, ids, H)
        assert len(fut) == len(ids) * H and fut["ds"].min() == cut + pd.Timedelta(days=1)
        real = fut[["unique_id", "ds"]].merge(fr.df[["unique_id", "ds", *fr.exog]], on=["unique_id", "ds"])
        got = fut.merge(real[["unique_id", "ds"]], on=["unique_id", "ds"])
        assert len(real) == len(fut)
        # the feature rows were built from the same events: every known input matches the realised one
        np.testing.assert_allclose(got[fr.exog].to_numpy(float), real[fr.exog].to_numpy(float), err_msg=name)
    hol = future_frame(fr.until(pd.Timestamp("2025-09-01")), ["1_1"], H)
    assert hol["is_holiday"].sum() == 0  # the days after Labor Day are no holidays: nothing held from the cutoff


def test_backtest_and_batch_paths_give_the_same_forecast(panel):
    _, fr = panel
    cfg = _cfg()
    bt = Backtester(cfg)
    for name, cut in _cutoffs(fr).items():
        parts = bt.forecast_at(fr, cut, H)
        back = parts.assign(mean=final_mean(parts, WEIGHTS))[["store_id", "product_id", "ds", "mean"]]
        model = DemandForecaster(cfg, "blend", cfg.lgbm, None, WEIGHTS).fit(fr.until(cut))
        batch = forecast_from(model, fr.until(cut), H).rename(columns={"date": "ds"})
        both = back.merge(batch[["store_id", "product_id", "ds", "mean"]], on=["store_id", "product_id", "ds"],
                          suffixes=("_backtest", "_batch"))
        assert len(both) == len(back) > 0, name
        np.testing.assert_allclose(both["mean_batch"], both["mean_backtest"], rtol=1e-6, atol=1e-9, err_msg=name)
        # and the pyfunc's predict (the registered artifact) goes through the same path
        pyf = model.predict(H).merge(back, on=["store_id", "product_id", "ds"], suffixes=("", "_backtest"))
        np.testing.assert_allclose(pyf["mean"], pyf["mean_backtest"], rtol=1e-6, atol=1e-9, err_msg=name)


def test_retired_product_and_closed_store_forecast_zero_after_their_date(panel):
    _, fr = panel
    cut = pd.Timestamp("2025-08-20")
    manifest = copy.deepcopy(fr.manifest)
    for p in manifest["products"]:
        if p["product_id"] == 1:
            p["retire_date"] = str((cut + pd.Timedelta(days=2)).date())
    for st in manifest["calendar"]["stores"]:
        if st["store_id"] == 2:
            st["close_date"] = str((cut + pd.Timedelta(days=4)).date())
    sub = fr.until(cut)
    sub.manifest = manifest
    cfg = _cfg()
    model = DemandForecaster(cfg, "blend", cfg.lgbm, None, {"all": {"weekday_mean": 1.0}}).fit(sub)
    out = forecast_from(model, sub, H)
    p1 = out[(out["product_id"] == 1) & (out["store_id"] == 1)].set_index("date")["mean"]
    assert (p1.loc[: cut + pd.Timedelta(days=2)] > 0).all() and (p1.loc[cut + pd.Timedelta(days=3):] == 0).all()
    s2 = out[out["store_id"] == 2]
    assert (s2.loc[s2["date"] > cut + pd.Timedelta(days=4), "mean"] == 0).all()
    assert (s2.loc[(s2["date"] <= cut + pd.Timedelta(days=4)) & (s2["product_id"] != 1), "mean"] > 0).all()
    cal = PlannedCalendar.from_manifest(manifest)
    assert cal.off_menu(pd.DataFrame({"store_id": [1], "product_id": [1], "ds": [cut + pd.Timedelta(days=3)]}))[0]
