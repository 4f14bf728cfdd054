"""Robust on real logs: dense id codes for LightGBM, the sparse-series rule, dead items, per-series results."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.config import load_settings
from training.backtest import per_series
from training.batch import forecast_from
from training.data import to_model_frame
from training.forecaster import DemandForecaster, active_series, sparse_series
from training.models import LGBMModel
from training.synthetic import synthetic_daily, synthetic_manifest

H = 7


def _cfg(**kw):
    s = load_settings(environ={})
    return s.training.model_copy(update={
        "horizon": H, "num_threads": 1, "tuned_params": None, "strategy": "recursive",
        "lgbm": {**s.training.lgbm, "n_estimators": 30, "num_leaves": 15}, **kw})


def test_lightgbm_gets_dense_codes_whatever_the_id_space():
    """Ids hashed from text keys reach 2^31; LightGBM sizes a categorical by its largest value. With dense codes
    the model is the same whatever the ids: identical forecasts for small and huge ids."""
    d = synthetic_daily(n_stores=2, n_products=4, days=90, seed=2)
    huge = d.assign(product_id=d["product_id"] + 2_000_000_000, store_id=d["store_id"] + 1_500_000_000)
    out = []
    for panel in (d, huge):
        fr = to_model_frame(panel, synthetic_manifest(panel))
        m = LGBMModel({"n_estimators": 20, "num_leaves": 7}, lags=[1, 7], strategy="recursive", horizon=H).fit(fr)
        assert sorted(m.codes_["product_id"].get_indexer(m.codes_["product_id"])) == [0, 1, 2, 3]
        fut_ids = sorted(fr.df["unique_id"].unique())
        from training.future import future_frame

        p = m.predict(H, future_frame(fr, fut_ids, H), fut_ids)
        out.append(p["lightgbm"].to_numpy())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-9)


def _with_odd_series(d: pd.DataFrame) -> pd.DataFrame:
    """Adds product 9 in store 1 sold once (21 units, 10 days before the end) and product 10 in store 1 last sold
    40 days before the end (a dead item), both on the grid with zeros afterwards."""
    end = d["date"].max()
    days = pd.date_range(end - pd.Timedelta(days=59), end, freq="D")
    extra = []
    for pid, sale_day, qty in ((9, end - pd.Timedelta(days=10), 21.0), (10, end - pd.Timedelta(days=40), 6.0)):
        q = np.where(days == sale_day, qty, 0.0)
        if pid == 10:
            q = np.where(days <= sale_day, 3.0, 0.0)
        extra.append(pd.DataFrame({"store_id": 1, "product_id": pid, "date": days, "qty": q, "censored": False,
                                   "true_mean": 0.0, "dow": days.dayofweek, "is_holiday": 0, "campaign": 0,
                                   "campaign_discount_pct": 0.0, "days_since_store_open": 0,
                                   "days_since_launch": 0, "temperature": 0.0}))
    return pd.concat([d, *extra], ignore_index=True)


def test_one_sale_series_gets_the_window_mean_and_dead_items_are_not_forecast():
    d = _with_odd_series(synthetic_daily(n_stores=2, n_products=4, days=90, seed=4))
    fr = to_model_frame(d, synthetic_manifest(d))
    cfg = _cfg()
    assert "1_9" in sparse_series(fr.df, cfg.sparse.min_sale_days)
    ids = active_series(fr.df, fr.last_date, cfg.dead_days)
    assert "1_9" in ids and "1_10" not in ids and "1_1" in ids
    # Croston alone would repeat the single sale (21 a day); the registered path gives 21 units / 28 days
    model = DemandForecaster(cfg, "blend", cfg.lgbm, None, {"all": {"croston": 1.0}}).fit(fr)
    out = forecast_from(model, fr, H)
    one = out[(out["store_id"] == 1) & (out["product_id"] == 9)]
    np.testing.assert_allclose(one["mean"], 21.0 / 28.0)
    assert not ((out["store_id"] == 1) & (out["product_id"] == 10)).any()  # dead: not forecast


def test_per_series_results_name_where_a_model_loses():
    rows = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 3, "store_id": [1] * 6, "product_id": [1] * 3 + [2] * 3,
                         "segment": "fast", "ds": list(pd.date_range("2025-01-01", periods=3)) * 2,
                         "censored": False, "y": [2.0, 2.0, 2.0, 10.0, 10.0, 10.0],
                         "m": [2.0, 2.0, 2.0, 5.0, 5.0, 5.0]})
    ps = per_series(rows, ["m"]).set_index("unique_id")
    assert ps.loc["a", "wape"] == 0 and ps.loc["b", "wape"] == 0.5 and ps.loc["b", "bias"] == -0.5
    assert ps.loc["b", "actual_units"] == 30 and ps.loc["b", "forecast_units"] == 15
