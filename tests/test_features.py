"""Feature job on hand-built sources: conservation, local time and DST, zero-fill bounds, censoring, inventory,
exogenous features, a point-of-sale-only source, incremental runs, the store API and the CLI."""

from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd
import pytest
from feature_fixtures import BOM, STOCKOUTS, STORES, add_order, build_source, expected_daily, expected_hourly, utc_naive

from features.extract import Source
from features.job import build_features
from features.store import FeatureStore
from forecasting.config import FeaturesConfig
from forecasting.errors import DataError

CFG = FeaturesConfig()


@pytest.fixture
def built(sqlite_url, tmp_path):
    engine, schema, facts = build_source(sqlite_url)
    out = tmp_path / "fs"
    summary = build_features(engine, schema, str(out), config=CFG)
    return engine, schema, facts, FeatureStore(out), summary


def _key_dict(df: pd.DataFrame, keys: list[str]) -> dict:
    k = df[keys].copy()
    if "date" in k:
        k["date"] = k["date"].dt.date
    return {tuple(int(v) if not isinstance(v, date) else v for v in row): int(q)
            for row, q in zip(k.itertuples(index=False), df["qty"], strict=True) if q}


def test_hourly_and_daily_conserve_completed_units(built):
    _, _, facts, fs, summary = built
    hourly, daily = fs.read("hourly"), fs.read("daily")
    assert _key_dict(hourly, ["store_id", "product_id", "date", "local_hour"]) == expected_hourly(facts)
    assert _key_dict(daily, ["store_id", "product_id", "date"]) == expected_daily(facts)
    by_day = hourly.groupby(["store_id", "product_id", "date"])["qty"].sum()
    pd.testing.assert_series_equal(by_day, daily.set_index(["store_id", "product_id", "date"])["qty"].sort_index())
    assert summary["lines_read"] == len(facts.lines) and summary["quarantined"]["total"] == 0


def test_material_panel_is_bom_times_units(built):
    fs = built[3]
    daily, mat = fs.read("daily"), fs.read("material_daily")
    bom = pd.DataFrame(BOM, columns=["product_id", "material_id", "qty_per_unit"])
    exp = daily.merge(bom, on="product_id").assign(q=lambda d: d["qty"] * d["qty_per_unit"])
    exp = exp.groupby(["store_id", "material_id", "date"])["q"].sum()
    got = mat.set_index(["store_id", "material_id", "date"])["qty"]
    pd.testing.assert_series_equal(got.sort_index(), exp.sort_index(), check_names=False, check_index_type=False)
    assert mat["qty"].sum() > 0


def test_dst_fall_back_sums_repeated_hour_and_keys_are_unique(sqlite_url, tmp_path):
    engine, schema, facts = build_source(sqlite_url)
    # local 1am happens twice on Nov 2: 05:xx UTC (EDT) and 06:xx UTC (EST)
    add_order(engine, schema, facts, 3, datetime(2025, 11, 2, 5, 30), [(101, 5)])
    add_order(engine, schema, facts, 3, datetime(2025, 11, 2, 6, 30), [(101, 11)])
    fs = FeatureStore(tmp_path / "fs")
    build_features(engine, schema, str(fs.path), config=CFG)
    hourly = fs.read("hourly")
    assert not hourly.duplicated(["store_id", "product_id", "date", "local_hour"]).any()
    s3 = hourly[(hourly["store_id"] == 3) & (hourly["product_id"] == 101)]
    hours_per_day = s3.groupby(s3["date"].dt.date)["local_hour"].nunique()
    assert hours_per_day[date(2025, 11, 2)] == 24 and hours_per_day[date(2025, 11, 1)] == 24
    first = [r for r in facts.lines if r["store_id"] == 3 and r["product_id"] == 101
             and datetime(2025, 11, 2, 5) <= r["created_at"] < datetime(2025, 11, 2, 7)]
    one_am = s3[(s3["date"] == "2025-11-02") & (s3["local_hour"] == 1)]
    assert one_am["qty"].item() == sum(r["quantity"] for r in first) >= 16
    assert _key_dict(hourly, ["store_id", "product_id", "date", "local_hour"]) == expected_hourly(facts)


def test_dst_spring_forward_has_no_2am(sqlite_url, tmp_path):
    engine, schema, facts = build_source(sqlite_url, start=date(2026, 3, 7), days=3, ireplenishment=False)
    fs = FeatureStore(tmp_path / "fs")
    build_features(engine, schema, str(fs.path), config=CFG)
    h = fs.read("hourly")
    s3 = h[h["store_id"] == 3]
    per_day = s3.groupby(s3["date"].dt.date)["local_hour"].unique().map(set)
    assert per_day[date(2026, 3, 8)] == set(range(24)) - {2}
    assert per_day[date(2026, 3, 7)] == set(range(24))
    assert _key_dict(h, ["store_id", "product_id", "date", "local_hour"]) == expected_hourly(facts)


def test_zero_fill_only_inside_hours_and_lifetimes(built):
    fs = built[3]
    hourly = fs.read("hourly")
    for s, open_date, _, oh, ch in STORES:
        h = hourly[hourly["store_id"] == s]
        assert h["local_hour"].between(oh, ch - 1).all()
        assert (h["date"] >= pd.Timestamp(open_date)).all()
    s2 = hourly[hourly["store_id"] == 2]
    assert s2["date"].min() == pd.Timestamp("2025-11-01")  # store 2 opens Nov 1
    seasonal = hourly[hourly["product_id"] == 104]
    assert set(seasonal["date"].dt.date) == {date(2025, 11, 2), date(2025, 11, 3), date(2025, 11, 4)}
    # every open hour of every active product is present (zeros included)
    n_s1 = hourly[(hourly["store_id"] == 1) & (hourly["product_id"] == 101)]
    assert len(n_s1) == 5 * 13 and (n_s1["qty"] == 0).any()


def test_censoring_from_stockouts_via_bom(built):
    fs, summary = built[3], built[4]
    daily = fs.read("daily")
    cens = {(int(r.store_id), int(r.product_id), r.date.date()) for r in daily[daily["censored"]].itertuples()}
    # store 1 ran out of milk (202) on Nov 1: both milk drinks; store 3 counted 0 croissants (204) on Nov 3
    assert cens == {(1, 101, date(2025, 11, 1)), (1, 102, date(2025, 11, 1)), (3, 103, date(2025, 11, 3))}
    row = daily[(daily["store_id"] == 1) & (daily["product_id"] == 101) & (daily["date"] == "2025-11-01")]
    assert row["stockout_hours"].item() == STOCKOUTS[0][3]
    hourly = fs.read("hourly")
    assert hourly.loc[hourly["censored"], ["store_id", "product_id"]].drop_duplicates().shape[0] == 3
    assert summary["censored_share"]["rows"] == pytest.approx(3 / len(daily), abs=1e-6)
    units = daily.loc[daily["censored"], "qty"].sum() / daily["qty"].sum()
    assert summary["censored_share"]["units"] == pytest.approx(units, abs=1e-6)
    mat = fs.read("material_daily")
    assert mat.loc[(mat["store_id"] == 1) & (mat["material_id"] == 203) & (mat["date"] == "2025-11-01"),
                   "censored"].item()  # cups feed the censored milk drinks


def test_inventory_history_and_incumbent_forecasts(built):
    fs = built[3]
    inv = fs.read("inventory_daily")
    r = inv[(inv["store_id"] == 2) & (inv["material_id"] == 203) & (inv["date"] == "2025-11-02")].iloc[0]
    k = 2  # Nov 2 is day index 2
    assert r["on_hand"] == 100 + 203 + k and r["waste"] == 1.0
    assert r["received"] == 10.0 * (k - 1) + 1  # ordered the day before, received on Nov 2
    assert r["ordered"] == 10.0 * k
    assert r["incumbent_fc_h1"] == 1000 + 20 + 203 + k and r["incumbent_fc_h7"] == 7000 + 20 + 203 + k
    assert "incumbent_fc_h3" not in inv
    out = inv[inv["stockout"]]
    assert {(int(a), int(b)) for a, b in zip(out["store_id"], out["material_id"], strict=True)} == {(1, 202), (3, 204)}


def test_exogenous_features_and_registry(built):
    fs = built[3]
    d = fs.read("daily").set_index(["store_id", "product_id", "date"])
    assert d.loc[(1, 101, pd.Timestamp("2025-11-04")), "is_holiday"]  # Election Day is a New York holiday
    assert not d.loc[(1, 101, pd.Timestamp("2025-11-03")), "is_holiday"]
    assert d.loc[(1, 101, pd.Timestamp("2025-11-01")), "dow"] == 5
    assert d.loc[(1, 102, pd.Timestamp("2025-11-02")), "campaign"]  # category campaign
    assert d.loc[(1, 102, pd.Timestamp("2025-11-02")), "campaign_discount_pct"] == pytest.approx(0.3)
    assert not d.loc[(1, 103, pd.Timestamp("2025-11-02")), "campaign"]  # non-campaign coupon ignored
    assert d.loc[(1, 103, pd.Timestamp("2025-11-04")), "campaign"]  # product campaign
    assert d.loc[(2, 101, pd.Timestamp("2025-11-03")), "days_since_store_open"] == 2
    assert d.loc[(1, 104, pd.Timestamp("2025-11-03")), "days_since_launch"] == 1
    assert d.loc[(1, 101, pd.Timestamp("2025-11-03")), "weather_shock"]
    assert d.loc[(1, 101, pd.Timestamp("2025-11-03")), "weather_kind"] == "storm"
    m = fs.manifest()
    reg = m["feature_registry"]
    assert reg["is_holiday"]["known_in_advance"] and not reg["qty"]["known_in_advance"]
    assert not reg["weather_shock"]["known_in_advance"] and reg["incumbent_fc_h7"]["known_in_advance"]
    assert set(reg) >= set(d.columns) - {"month"}


def test_manifest_and_pandas_readback(built):
    fs, summary = built[3], built[4]
    m = fs.manifest()
    assert m["watermark"] == "2025-11-04" and m["first_date"] == "2025-10-31"
    assert {n: v["rows"] for n, v in m["datasets"].items()} == summary["rows"]
    assert len(m["schema_hash"]) == 16 and m["source"]["dialect"] == "sqlite"
    assert "demand_truth" not in m["source"]["tables"]
    menu = {p["product_id"]: p for p in m["products"]}  # the menu, for launches the batch forecast clones
    assert set(menu) >= {101, 102, 103, 104} and all("launch_date" in p and "category" in p for p in menu.values())
    raw = pd.read_parquet(fs.path / "hourly")
    assert len(raw) == summary["rows"]["hourly"]
    assert raw["date"].dtype == "datetime64[ns]" and isinstance(raw["month"].dtype, pd.CategoricalDtype)
    part = fs.read("daily", start="2025-11-02", end="2025-11-03")
    assert set(part["date"].dt.date) == {date(2025, 11, 2), date(2025, 11, 3)} and "month" not in part


def test_point_of_sale_only_source(sqlite_url, tmp_path):
    engine, schema, facts = build_source(sqlite_url, ireplenishment=False)
    fs = FeatureStore(tmp_path / "fs")
    summary = build_features(engine, schema, str(fs.path), config=CFG)
    assert summary["inventory"] is False and summary["materials"].startswith("product")
    assert summary["censored_share"] == {"rows": 0.0, "units": 0.0}
    daily, mat = fs.read("daily"), fs.read("material_daily")
    assert not daily["censored"].any() and not daily["campaign"].any()
    assert (mat["material_id"] == 0).sum() == 0
    assert mat.set_index(["store_id", "material_id", "date"])["qty"].sum() == daily["qty"].sum()
    inv = fs.read("inventory_daily")
    assert inv.empty and "on_hand" in inv.columns
    assert _key_dict(daily, ["store_id", "product_id", "date"]) == expected_daily(facts)


def test_incremental_equals_full_and_is_idempotent(sqlite_url, tmp_path):
    engine, schema, facts = build_source(sqlite_url)
    inc, full = FeatureStore(tmp_path / "inc"), FeatureStore(tmp_path / "full")
    s1 = build_features(engine, schema, str(inc.path), until=date(2025, 11, 3), config=CFG)
    assert s1["mode"] == "full" and fs_max(inc) == date(2025, 11, 3)
    # a late order lands on the watermark day; the re-read picks it up (and merges with Nov 1 kept on disk)
    add_order(engine, schema, facts, 1, utc_naive(datetime(2025, 11, 3, 9, 30)), [(101, 7)])
    s2 = build_features(engine, schema, str(inc.path), config=CFG)
    assert s2["mode"] == "incremental" and s2["window"] == {"start": "2025-11-02", "end": "2025-11-04"}
    assert _key_dict(inc.read("daily"), ["store_id", "product_id", "date"]) == expected_daily(facts)
    build_features(engine, schema, str(full.path), full=True, config=CFG)
    for name in ("hourly", "daily", "material_daily", "inventory_daily"):
        pd.testing.assert_frame_equal(inc.read(name), full.read(name), check_categorical=False)
    assert inc.manifest()["datasets"] == full.manifest()["datasets"]
    assert inc.manifest()["censored"] == full.manifest()["censored"]
    before = inc.read("hourly")
    s3 = build_features(engine, schema, str(inc.path), config=CFG)
    pd.testing.assert_frame_equal(inc.read("hourly"), before)
    assert s3["rows"] == s2["rows"]
    assert not [p for p in inc.path.iterdir() if p.name.startswith(".")]  # no staging left behind


def fs_max(fs: FeatureStore) -> date:
    return fs.read("daily")["date"].max().date()


def test_until_limits_the_window(built, tmp_path):
    engine, schema = built[0], built[1]
    fs = FeatureStore(tmp_path / "cut")
    s = build_features(engine, schema, str(fs.path), until=date(2025, 11, 1), config=CFG)
    assert fs_max(fs) == date(2025, 11, 1) and s["watermark"] == "2025-11-01"


def test_truth_tables_are_never_readable(built):
    src = Source.open(built[0], built[1])
    assert "demand_truth" not in src.present
    with pytest.raises(DataError, match="ground truth"):
        src.t("demand_truth")


def test_empty_source_is_a_data_error(sqlite_url, tmp_path):
    from forecasting.source.db import init_db, open_source

    engine, schema = open_source(sqlite_url)
    init_db(engine, schema)
    with pytest.raises(DataError, match="no stores"):
        build_features(engine, schema, str(tmp_path / "fs"), config=CFG)


def test_cli_build_json_and_plain(built, sqlite_url, tmp_path, capsys):
    from replenish.cli import main

    out = tmp_path / "cli"
    main(["features", "build", "--db", sqlite_url, "--out", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"]["daily"] == built[4]["rows"]["daily"] and summary["watermark"] == "2025-11-04"
    assert set(summary) >= {"rows", "censored_share", "quarantined", "seconds", "watermark"}
    main(["features", "build", "--db", sqlite_url, "--out", str(out), "--full"])
    text = capsys.readouterr().out
    assert "full build" in text and "hourly" in text


def test_cli_bad_until_is_one_line_exit_2(sqlite_url, capsys):
    from replenish.cli import main

    build_source(sqlite_url)
    with pytest.raises(SystemExit) as exc:
        main(["features", "build", "--db", sqlite_url, "--until", "yesterday"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --until") and "\n" not in err


def test_holidays_follow_the_configured_calendar_and_the_registry_says_so(sqlite_url, tmp_path):
    """Election Day (2025-11-04) is a New York holiday, not a Californian one: the configured calendar decides, and
    the registry describes where the calendar comes from instead of naming one."""
    engine, schema, _ = build_source(sqlite_url)
    fs = FeatureStore(tmp_path / "fs")
    build_features(engine, schema, str(fs.path), config=FeaturesConfig(holiday_country="US", holiday_subdiv="CA"))
    d = fs.read("daily").set_index(["store_id", "product_id", "date"])
    assert not d.loc[(1, 101, pd.Timestamp("2025-11-04")), "is_holiday"]
    desc = fs.manifest()["feature_registry"]["is_holiday"]["description"]
    assert "New York" not in desc and "features.holiday_country" in desc and "t_source_meta" in desc
