"""The feature window follows the stores' own time zones, not the configured default one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.job import build_features
from forecasting.config import load_settings, shared_data_path
from forecasting.source.db import open_source
from forecasting.source.pos import import_pos

ROOT = Path(__file__).resolve().parent.parent
MAVEN = shared_data_path("maven_coffee_shop_sales.csv.gz")
pytestmark = pytest.mark.skipif(not MAVEN.is_file(), reason=f"acceptance data {MAVEN} not present")


def test_last_local_day_of_a_log_far_east_of_new_york_is_built(tmp_path):
    """Auckland is 18 hours ahead of New York in January: its afternoon sales fall on the previous New York date,
    so a window read in New York time lost the last local day (all its orders before 17:00 here)."""
    import yaml

    log = pd.read_csv(MAVEN, dtype=str, keep_default_na=False)
    date = pd.to_datetime(log["transaction_date"], format="mixed")
    days = sorted(date.unique())[:9]
    log = log[date.isin(days)]
    hour = log["transaction_time"].str.slice(0, 2).astype(int)
    last = pd.to_datetime(log["transaction_date"], format="mixed") == days[-1]
    log = log[~last | (hour < 17)]
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    mapping = yaml.safe_load((ROOT / "configs" / "sources" / "maven_coffee.yaml").read_text())
    mapping["timezone"] = "Pacific/Auckland"
    mpath = tmp_path / "mapping.yaml"
    mpath.write_text(yaml.safe_dump(mapping))
    url = f"sqlite:///{tmp_path / 'src.db'}"
    engine, schema = open_source(url)
    try:
        import_pos(path, mpath, engine, schema)
        cfg = load_settings().features  # default_timezone: America/New_York
        build_features(engine, schema, str(tmp_path / "features"), config=cfg)
    finally:
        engine.dispose()
    daily = pd.read_parquet(tmp_path / "features" / "daily")
    assert pd.Timestamp(daily["date"].max()).date() == pd.Timestamp(days[-1]).date()
    assert pd.Timestamp(daily["date"].min()).date() == pd.Timestamp(days[0]).date()
