"""A store that opens with no series yet gets each product's mean over the open stores (``new_store_means``),
through the one predict path (``DemandForecaster.forecast``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecasting.config import LaunchConfig, TrainingConfig
from training.data import ModelFrame
from training.forecaster import DemandForecaster
from training.launch import new_store_means

LAST = pd.Timestamp("2026-01-10")
STORES = [{"store_id": 1, "open_date": "2025-06-01", "close_date": None},
          {"store_id": 2, "open_date": "2025-06-01", "close_date": None},
          {"store_id": 3, "open_date": "2026-01-13", "close_date": None}]  # opens in 3 days, no series


def _frame(stores: list[dict] = STORES, days: int = 70) -> ModelFrame:
    ds = pd.date_range(LAST - pd.Timedelta(days=days - 1), LAST)
    level = {(1, 1): 10.0, (1, 2): 4.0, (2, 1): 20.0}  # store 2 does not carry product 2
    df = pd.DataFrame([(f"{s}_{p}", d, s, p, v) for (s, p), v in level.items() for d in ds],
                      columns=["unique_id", "ds", "store_id", "product_id", "y"])
    df["y_filled"] = df["y"]
    df["censored"] = False
    return ModelFrame(df, ["store_id", "product_id"], [], {"calendar": {"stores": stores}})


def _means(frame: ModelFrame, h: int = 7) -> pd.DataFrame:
    fut = pd.date_range(LAST + pd.Timedelta(days=1), periods=h)
    keys = frame.df.drop_duplicates("unique_id")
    return pd.DataFrame([(r.unique_id, d, "fast", float(r.y), r.store_id, r.product_id)
                         for r in keys.itertuples() for d in fut],
                        columns=["unique_id", "ds", "segment", "mean", "store_id", "product_id"])


def test_a_store_opening_in_the_horizon_gets_the_open_stores_mean_from_its_open_date():
    frame = _frame()
    out = new_store_means(frame, _means(frame), 7, LaunchConfig(store_factor=1.0))
    assert set(out["store_id"]) == {3} and (out["segment"] == "new_store").all()
    assert pd.Timestamp(out["ds"].min()) == pd.Timestamp("2026-01-13") and len(out) == 2 * 5  # 2 products x 5 days
    by = out.groupby("product_id")["mean"].unique()
    assert list(by[1]) == [15.0] and list(by[2]) == [2.0]  # (10 + 20) / 2; (4 + 0) / 2: store 2 does not carry it
    half = new_store_means(frame, _means(frame), 7, LaunchConfig(store_factor=0.6))
    assert np.allclose(half.groupby("product_id")["mean"].first().to_numpy(), [9.0, 1.2])


def test_off_old_or_closed_stores_get_nothing_and_existing_series_are_left():
    frame = _frame()
    assert new_store_means(frame, _means(frame), 7, LaunchConfig(store_factor=0.0)).empty
    assert new_store_means(frame, _means(frame), 7, LaunchConfig(enabled=False)).empty
    assert new_store_means(frame, _means(frame), 2, LaunchConfig()).empty  # opens after the horizon
    long_ago = [*STORES[:2], {"store_id": 3, "open_date": "2025-12-01", "close_date": None}]
    assert new_store_means(_frame(long_ago), _means(frame), 7, LaunchConfig()).empty  # beyond grace_days
    recent = [*STORES[:2], {"store_id": 3, "open_date": "2026-01-06", "close_date": None}]
    got = new_store_means(_frame(recent), _means(frame), 7, LaunchConfig())
    assert pd.Timestamp(got["ds"].min()) == LAST + pd.Timedelta(days=1) and len(got) == 2 * 7  # opened 4 days ago
    # store 2 opened within grace_days but has a series for product 1: only its missing product 2 is cloned
    fresh = [STORES[0], {"store_id": 2, "open_date": "2026-01-08", "close_date": None}]
    got = new_store_means(_frame(fresh), _means(frame), 7, LaunchConfig(store_factor=1.0))
    assert set(zip(got["store_id"], got["product_id"], strict=True)) == {(2, 2)}
    assert set(got["mean"]) == {4.0}  # the established store 1 alone
    assert new_store_means(ModelFrame(frame.df, [], [], {}), _means(frame), 7, LaunchConfig()).empty  # no calendar


def test_the_predict_path_forecasts_the_new_store_and_leaves_existing_series_unchanged():
    cfg = TrainingConfig()
    frame = _frame()
    rule = {"all": {"weekday_mean": 1.0}}  # the weekday rule: no model to fit
    fc = DemandForecaster(cfg, "blend", weights=rule)
    on = fc.forecast(frame, 7, stats=None)
    fc_off = DemandForecaster(cfg.model_copy(update={"launch": cfg.launch.model_copy(update={"store_factor": 0.0})}),
                              "blend", weights=rule)
    off = fc_off.forecast(frame, 7, stats=None)
    new = on[on["store_id"] == 3]
    assert len(new) and (new["mean"] > 0).all() and (new["segment"] == "new_store").all()
    assert pd.Timestamp(new["ds"].min()) == pd.Timestamp("2026-01-13")  # zero (no row) before it opens
    old = on[on["store_id"] != 3].sort_values(["unique_id", "ds"], ignore_index=True)
    pd.testing.assert_frame_equal(old, off.sort_values(["unique_id", "ds"], ignore_index=True))
    assert (off["store_id"] != 3).all()
