"""Validation of the extract: each kind of bad row injected into a real database ends in quarantine, is left out
of the panels, is counted, and too many of them fail the job with one line. MariaDB gives the same store."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from feature_fixtures import add_order, build_source, expected_daily, utc_naive
from sqlalchemy import insert, text

from features.job import build_features
from features.store import FeatureStore
from forecasting.config import FeaturesConfig
from forecasting.errors import DataError
from forecasting.source.schema import build_schema

LENIENT = FeaturesConfig(max_bad_share=0.5)


def _inject(engine, schema, facts) -> dict[str, int]:
    """One or two bad lines per reason (good lines of mixed orders are recorded as valid); expected counts."""
    local = datetime(2025, 11, 3, 10, 15)
    add_order(engine, schema, facts, 1, utc_naive(local), [(101, 0)], record=False)
    add_order(engine, schema, facts, 1, utc_naive(local), [(101, -2)], record=False)
    oid = add_order(engine, schema, facts, 1, utc_naive(local), [(999, 1)], record=False)
    add_order(engine, schema, facts, 99, utc_naive(local), [(101, 1), (102, 1)], record=False)
    add_order(engine, schema, facts, 1, utc_naive(datetime(2025, 11, 3, 22, 5)), [(103, 4)], record=False)
    add_order(engine, schema, facts, 1, datetime(2031, 1, 1, 12), [(101, 1)], record=False)
    dup = add_order(engine, schema, facts, 2, utc_naive(local), [(101, 2), (102, 1)], record=False)
    with engine.begin() as conn:  # the same (order_id, line_no) twice: the whole order is quarantined
        conn.execute(insert(schema["order_items"]), [{"order_id": dup, "line_no": 1, "product_id": 101,
                                                      "quantity": 2, "unit_price": 4.5, "discount": 0}])
    assert oid
    return {"non_positive_quantity": 2, "unknown_product": 1, "unknown_store": 2, "outside_opening_hours": 1,
            "future_timestamp": 1, "duplicate_order_line": 3}


def _check_quarantine(fs: FeatureStore, summary: dict, expected: dict[str, int], facts) -> None:
    got = {k: v for k, v in summary["quarantined"].items() if k != "total"}
    assert got == expected
    assert summary["quarantined"]["total"] == sum(expected.values())
    for reason, n in expected.items():
        q = pd.read_csv(fs.path / "quarantine" / f"{reason}.csv")
        assert len(q) == n and (q["reason"] == reason).all()
        assert {"order_id", "line_no", "store_id", "product_id", "created_at", "quantity", "date"} <= set(q.columns)
    assert fs.manifest()["quarantine"] == expected
    daily = fs.read("daily")
    got_daily = {(int(s), int(p), d.date()): int(q) for s, p, d, q in
                 daily[["store_id", "product_id", "date", "qty"]].itertuples(index=False) if q}
    assert got_daily == expected_daily(facts)  # bad lines never reach the panels
    assert summary["bad_share"] == pytest.approx(sum(expected.values()) / summary["lines_read"], abs=1e-6)


def test_each_bad_row_kind_is_quarantined_sqlite(sqlite_url, tmp_path):
    engine, schema, facts = build_source(sqlite_url)
    expected = _inject(engine, schema, facts)
    fs = FeatureStore(tmp_path / "fs")
    summary = build_features(engine, schema, str(fs.path), config=LENIENT)
    _check_quarantine(fs, summary, expected, facts)
    q = pd.read_csv(fs.path / "quarantine" / "outside_opening_hours.csv")
    assert q["date"].item() == "2025-11-03" and q["quantity"].item() == 4


def test_duplicate_order_ids_in_a_table_without_key(sqlite_url, tmp_path):
    """A plain POS import may lack the primary key: both copies of a repeated order id are quarantined."""
    engine, schema, facts = build_source(sqlite_url, ireplenishment=False)
    oid = add_order(engine, schema, facts, 1, utc_naive(datetime(2025, 11, 3, 9, 0)), [(101, 3)], record=False)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t_order_raw AS SELECT * FROM t_order"))
        conn.execute(text("INSERT INTO t_order_raw SELECT * FROM t_order WHERE order_id = :o"), {"o": oid})
    raw = build_schema({"orders": "t_order_raw"})
    fs = FeatureStore(tmp_path / "fs")
    summary = build_features(engine, raw, str(fs.path), config=LENIENT)
    assert summary["quarantined"] == {"duplicate_order_id": 2, "total": 2}
    q = pd.read_csv(fs.path / "quarantine" / "duplicate_order_id.csv")
    assert set(q["order_id"]) == {oid}
    daily = fs.read("daily")
    assert daily["qty"].sum() == sum(r["quantity"] for r in facts.lines)


def test_too_many_bad_rows_fail_with_one_line_and_keep_the_old_store(sqlite_url, tmp_path):
    engine, schema, facts = build_source(sqlite_url)
    fs = FeatureStore(tmp_path / "fs")
    build_features(engine, schema, str(fs.path), config=FeaturesConfig())
    before = fs.manifest()
    _inject(engine, schema, facts)
    with pytest.raises(DataError) as exc:
        build_features(engine, schema, str(fs.path), full=True, config=FeaturesConfig(max_bad_share=0.01))
    msg = str(exc.value)
    assert "\n" not in msg and "max_bad_share" in msg and "quarantine" in msg
    assert fs.manifest() == before  # the failed run committed nothing
    assert (fs.path / "quarantine" / "unknown_store.csv").is_file()  # but the bad rows are there to inspect
    assert not [p for p in fs.path.iterdir() if p.name.startswith(".")]


def test_cli_fails_exit_2_on_bad_share(sqlite_url, tmp_path, capsys, monkeypatch):
    from replenish.cli import main

    engine, schema, facts = build_source(sqlite_url)
    _inject(engine, schema, facts)
    monkeypatch.setenv("REPLENISH__FEATURES__MAX_BAD_SHARE", "0.001")
    with pytest.raises(SystemExit) as exc:
        main(["features", "build", "--db", sqlite_url, "--out", str(tmp_path / "fs"), "--json"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "failed validation" in captured.err


@pytest.mark.mysql
def test_mariadb_quarantine_and_identical_store(mysql_url, sqlite_url, tmp_path):
    stores = {}
    for name, url in (("mysql", mysql_url), ("sqlite", sqlite_url)):
        engine, schema, facts = build_source(url)
        expected = _inject(engine, schema, facts)
        fs = FeatureStore(tmp_path / name)
        summary = build_features(engine, schema, str(fs.path), config=LENIENT)
        _check_quarantine(fs, summary, expected, facts)
        stores[name] = fs
        engine.dispose()
    for ds in ("hourly", "daily", "material_daily", "inventory_daily"):
        pd.testing.assert_frame_equal(stores["mysql"].read(ds), stores["sqlite"].read(ds), check_categorical=False)
    m, s = stores["mysql"].manifest(), stores["sqlite"].manifest()
    assert m["datasets"] == s["datasets"] and m["censored"] == s["censored"] and m["schema_hash"] == s["schema_hash"]
