"""The forecast cache is atomic and replaceable, and says what is missing."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from forecasting.errors import DataError
from forecasting.source.forecast_cache import latest, read_cache, write_cache


def _frame(mean: float) -> pd.DataFrame:
    return pd.DataFrame({
        "store_id": [1, 1], "product_id": [7, 7], "date": [date(2026, 2, 13), date(2026, 2, 14)], "horizon": [1, 2],
        "mean": [mean, mean], "dispersion": [0.2, 0.2], "shared_dispersion": [0.01, 0.01],
    })


def test_write_read_replace_and_latest(tmp_path):
    write_cache(tmp_path, _frame(3.0), "7", date(2026, 2, 12))
    write_cache(tmp_path, _frame(5.0), "7", date(2026, 2, 12))  # same key replaces, never duplicates
    got = read_cache(tmp_path, "7", date(2026, 2, 12))
    assert got.frame["mean"].tolist() == [5.0, 5.0]
    write_cache(tmp_path, _frame(6.0), "8", date(2026, 2, 13))
    assert latest(tmp_path).model_version == "8"
    assert latest(tmp_path, "7").data_date == date(2026, 2, 12)
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_missing_cache_and_columns_are_clear(tmp_path):
    with pytest.raises(DataError, match="no cached forecasts"):
        latest(tmp_path)
    with pytest.raises(DataError, match="lacks columns"):
        write_cache(tmp_path, _frame(1.0).drop(columns=["dispersion"]), "1", date(2026, 1, 1))
