"""Launching products with no series yet are forecast from like items of the same category and store."""

from __future__ import annotations

import pandas as pd

from forecasting.config import LaunchConfig
from training.data import ModelFrame
from training.launch import launch_means

LAST = pd.Timestamp("2026-01-10")


def _frame_and_means(menu: list[dict]) -> tuple[ModelFrame, pd.DataFrame]:
    days = pd.date_range(LAST - pd.Timedelta(days=9), LAST)
    df = pd.DataFrame([(f"{s}_{p}", d, s, p) for s in (1, 2) for p in (1, 2, 3) for d in days],
                      columns=["unique_id", "ds", "store_id", "product_id"]).assign(y=1.0)
    future = pd.date_range(LAST + pd.Timedelta(days=1), periods=7)
    level = {1: 10.0, 2: 20.0, 3: 5.0}
    means = pd.DataFrame([(f"{s}_{p}", d, "fast", level[p] * s, s, p) for s in (1, 2) for p in (1, 2, 3)
                          for d in future], columns=["unique_id", "ds", "segment", "mean", "store_id", "product_id"])
    return ModelFrame(df, ["store_id", "product_id"], [], {"products": menu}), means


MENU = [
    {"product_id": 1, "category": "latte", "launch_date": "2025-06-01", "retire_date": None},
    {"product_id": 2, "category": "latte", "launch_date": "2025-06-01", "retire_date": None},
    {"product_id": 3, "category": "bakery", "launch_date": "2025-06-01", "retire_date": None},
    {"product_id": 7, "category": "latte", "launch_date": "2026-01-13", "retire_date": None},  # launches in 3 days
    {"product_id": 8, "category": "latte", "launch_date": "2025-12-01", "retire_date": None},  # long launched, unsold
    {"product_id": 9, "category": "latte", "launch_date": "2026-01-12", "retire_date": "2026-01-14"},  # 3-day special
    {"product_id": 10, "category": "tea", "launch_date": "2026-01-12", "retire_date": None},  # no like item
    {"product_id": 11, "category": "latte", "launch_date": "2026-02-20", "retire_date": None},  # after the horizon
]


def test_a_launch_is_the_category_mean_of_its_store_from_its_first_day():
    frame, means = _frame_and_means(MENU)
    out = launch_means(frame, means, 7, LaunchConfig())
    assert set(out["product_id"]) == {7, 9}
    new = out[out["product_id"] == 7]
    assert pd.Timestamp(new["ds"].min()) == pd.Timestamp("2026-01-13") and len(new) == 2 * 5
    # store 1: mean of its lattes (10 and 20); store 2 sells twice as much
    assert set(new.loc[new["store_id"] == 1, "mean"]) == {15.0} and set(new.loc[new["store_id"] == 2, "mean"]) == {30.0}
    assert (out["segment"] == "new_product").all() and set(out["unique_id"]) >= {"1_7", "2_7"}
    special = out[out["product_id"] == 9]
    assert sorted(pd.to_datetime(special["ds"]).dt.day.unique()) == [12, 13, 14]  # launch .. retire only
    half = launch_means(frame, means, 7, LaunchConfig(factor=0.5))
    assert set(half.loc[(half["product_id"] == 7) & (half["store_id"] == 1), "mean"]) == {7.5}


def test_no_menu_or_disabled_means_no_rows():
    frame, means = _frame_and_means(MENU)
    assert launch_means(frame, means, 7, LaunchConfig(enabled=False)).empty
    bare, _ = _frame_and_means([])
    assert launch_means(bare, means, 7, LaunchConfig()).empty
