"""``replenish import-pos`` on the real Maven Roasters POS log: counts, derivations, UTC, rejects, all-or-nothing."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sqlalchemy import func, inspect, select

from forecasting.config import shared_data_path
from forecasting.errors import ConfigError, DataError
from forecasting.source.db import open_source
from forecasting.source.pos import import_pos, load_mapping

ROOT = Path(__file__).resolve().parent.parent
MAVEN = shared_data_path("maven_coffee_shop_sales.csv.gz")
MAPPING = ROOT / "configs" / "sources" / "maven_coffee.yaml"
pytestmark = pytest.mark.skipif(not MAVEN.is_file(), reason=f"acceptance data {MAVEN} not present")


@pytest.fixture(scope="module")
def maven() -> pd.DataFrame:
    """The whole file as text, exactly as written."""
    return pd.read_csv(MAVEN, dtype=str, keep_default_na=False)


@pytest.fixture
def head(maven) -> pd.DataFrame:
    return maven.head(5000).copy()


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False, compression="gzip" if path.suffix == ".gz" else None)
    return path


def _mapping(tmp_path: Path, **over) -> Path:
    data = yaml.safe_load(MAPPING.read_text())
    for key, value in over.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    out = tmp_path / "mapping.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def _run(path: Path, url: str, mapping: Path = MAPPING, **kw):
    engine, schema = open_source(url)
    try:
        return import_pos(path, mapping, engine, schema, **kw)
    finally:
        engine.dispose()


def _query(url: str, fn):
    engine, schema = open_source(url)
    try:
        with engine.connect() as conn:
            return fn(conn, schema)
    finally:
        engine.dispose()


def _commit(conn, fn, s):
    out = fn(conn, s)
    conn.commit()
    return out


def _totals(url: str) -> dict[str, float]:
    """Counts and sums as stored; all zero when the import never created the tables (nothing loaded)."""

    def q(conn, s):
        if not inspect(conn).has_table(s["orders"].name):
            return {"orders": 0, "items": 0, "units": 0, "revenue": 0.0, "paid": 0.0}
        items, orders = s["order_items"], s["orders"]
        return {
            "orders": conn.execute(select(func.count()).select_from(orders)).scalar_one(),
            "items": conn.execute(select(func.count()).select_from(items)).scalar_one(),
            "units": conn.execute(select(func.sum(items.c.quantity))).scalar_one() or 0,
            "revenue": float(conn.execute(select(func.sum(items.c.quantity * items.c.unit_price))).scalar_one() or 0),
            "paid": float(conn.execute(select(func.sum(orders.c.pay_amount))).scalar_one() or 0),
        }

    return _query(url, q)


def _expected(df: pd.DataFrame) -> dict[str, float]:
    qty, price = df["transaction_qty"].astype(int), df["unit_price"].astype(float)
    return {"orders": df["transaction_id"].nunique(), "items": len(df), "units": int(qty.sum()),
            "revenue": float((qty * price).sum())}


def _check_totals(url: str, df: pd.DataFrame) -> None:
    got, want = _totals(url), _expected(df)
    assert (got["orders"], got["items"], got["units"]) == (want["orders"], want["items"], want["units"])
    assert got["revenue"] == pytest.approx(want["revenue"], abs=0.01)
    assert got["paid"] == pytest.approx(want["revenue"], abs=0.01)


def test_gzip_csv_slice_counts_dates_utc_and_materials(tmp_path, sqlite_url, head):
    report = _run(_write_csv(head, tmp_path / "head.csv.gz"), sqlite_url)
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (5000, 5000, 0)
    _check_totals(sqlite_url, head)

    def q(conn, s):
        products = {r.product_id: r for r in conn.execute(select(s["products"]))}
        stores = {r.store_id: r for r in conn.execute(select(s["stores"]))}
        first = conn.execute(select(s["orders"]).where(s["orders"].c.order_id == 1)).one()
        materials = conn.execute(select(s["materials"])).all()
        bom = conn.execute(select(s["bom"])).all()
        return products, stores, first, materials, bom

    products, stores, first, materials, bom = _query(sqlite_url, q)
    first_sale = head.groupby(head["product_id"].astype(int))["transaction_date"].min()
    assert {pid: str(p.launch_date) for pid, p in products.items()} == first_sale.to_dict()
    assert all(p.retire_date is None for p in products.values())
    modal = head.groupby(head["product_id"].astype(int))["unit_price"].agg(lambda s: float(s.value_counts().index[0]))
    assert {pid: float(p.list_price) for pid, p in products.items()} == modal.to_dict()
    cats = head.groupby(head["product_id"].astype(int))["product_category"].first()
    assert {pid: p.is_drink for pid, p in products.items()} == (
        cats.isin(["Coffee", "Tea", "Drinking Chocolate"]).to_dict())
    assert set(stores) == {3, 5, 8} and stores[5].store_name == "Lower Manhattan"
    assert all(s.timezone == "America/New_York" and str(s.open_date) == "2023-01-01" for s in stores.values())
    # Row 1: 2023-01-01 07:06:11 New York (EST, UTC-5) -> 12:06:11 UTC, naive.
    assert str(first.created_at) == "2023-01-01 12:06:11" and first.completed_at == first.created_at
    assert (first.store_id, first.status, first.channel, first.currency, first.user_id) == (
        5, "completed", "other", "USD", None)
    assert sorted(m.material_id for m in materials) == sorted(products)
    assert all(m.pack_size == 1 and not m.is_perishable and m.storage_class == "ambient" for m in materials)
    assert {(b.product_id, b.material_id, b.qty_per_unit) for b in bom} == {(p, p, 1.0) for p in products}


def test_parquet_typed_slice_matches_csv(tmp_path, sqlite_url, head):
    typed = head.assign(
        transaction_id=head["transaction_id"].astype("int64"),
        transaction_date=pd.to_datetime(head["transaction_date"]),
        transaction_qty=head["transaction_qty"].astype("int64"),
        store_id=head["store_id"].astype("int64"),
        product_id=head["product_id"].astype("int64"),
        unit_price=head["unit_price"].astype(float),
    )
    path = tmp_path / "head.parquet"
    typed.to_parquet(path, index=False)
    report = _run(path, sqlite_url)
    assert report.rows_loaded == 5000 and report.revenue == pytest.approx(_expected(head)["revenue"], abs=0.01)
    _check_totals(sqlite_url, head)


def test_bad_date_stops_with_line_number_and_loads_nothing(tmp_path, sqlite_url, head):
    df = head.head(300).copy()
    df.loc[41, "transaction_date"] = "2023-02-30"  # data row 41 (0-based) is line 43 of the file
    path = _write_csv(df, tmp_path / "bad.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "replenish.cli", "import-pos", str(path), "--mapping", str(MAPPING),
         "--db", sqlite_url, "--max-reject-share", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "line 43: unparseable date in transaction_date '2023-02-30'" in lines[0]
    assert _totals(sqlite_url)["orders"] == 0

    # Under the mapping's 1 % limit the same row is only rejected, and reported.
    report = _run(path, sqlite_url)
    assert report.rows_loaded == 299 and report.rejected == {"unparseable date in transaction_date": 1}
    assert report.first_rejected == {"unparseable date in transaction_date": "line 43"}


def test_each_reject_reason_is_counted(tmp_path, sqlite_url, head):
    df = head.head(1000).copy()
    bad = {
        10: ("store_id", ""), 20: ("transaction_qty", "0"), 30: ("transaction_qty", "-2"),
        40: ("transaction_qty", "x"), 50: ("unit_price", "-1.5"), 60: ("transaction_time", "25:10:00"),
        70: ("transaction_qty", "1.5"),
    }
    for i, (col, value) in bad.items():
        df.loc[i, col] = value
    df.loc[80, ["transaction_date", "transaction_time"]] = ["2023-03-12", "02:30:00"]  # spring-forward gap
    report = _run(_write_csv(df, tmp_path / "rejects.csv"), sqlite_url)
    assert report.rejected == {
        "missing store_id": 1, "non-positive quantity in transaction_qty": 2,
        "unparseable quantity in transaction_qty": 1, "negative price in unit_price": 1,
        "unparseable time in transaction_time": 1, "non-integer quantity in transaction_qty": 1,
        "nonexistent local time in America/New_York": 1,
    }
    assert report.first_rejected["missing store_id"] == "line 12"
    assert report.rows_loaded == 992
    _check_totals(sqlite_url, df.drop(index=[*bad, 80]))


def test_missing_column_is_named(tmp_path, sqlite_url, head):
    path = _write_csv(head.head(50).drop(columns=["transaction_qty"]), tmp_path / "nocol.csv.gz")
    with pytest.raises(DataError, match=r"required column 'transaction_qty' \(columns.quantity\) missing"):
        _run(path, sqlite_url)
    assert _totals(sqlite_url)["orders"] == 0


@pytest.mark.parametrize("extra", [",99", ""], ids=["extra-field", "short-row"])
def test_broken_row_structure_names_the_line(tmp_path, sqlite_url, head, extra):
    text = head.head(20).to_csv(index=False).splitlines()
    text[7] = text[7] + extra if extra else text[7].rsplit(",", 2)[0]  # line 8 of the file
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"line 8: expected 11 fields, saw (12|9)"):
        _run(path, sqlite_url)


def test_refuses_second_import_and_replace_is_atomic(tmp_path, sqlite_url, head):
    path = _write_csv(head.head(1000), tmp_path / "a.csv.gz")
    _run(path, sqlite_url)
    with pytest.raises(DataError, match="already holds a history .*1000 orders.*--replace"):
        _run(path, sqlite_url)
    broken = _write_csv(head.head(10).assign(transaction_date="not a date"), tmp_path / "broken.csv")
    with pytest.raises(DataError, match=r"date_format .* parses no value .*\(line 2: .not a date.\)"):
        _run(broken, sqlite_url, replace=True)
    _check_totals(sqlite_url, head.head(1000))  # the failed replace left the history untouched

    def states(conn, s):
        return conn.execute(select(func.count()).select_from(s["proposal_states"])).scalar_one()

    def approve(conn, s):  # a planner's decision on the old history
        conn.execute(s["proposal_states"].insert().values(proposal_date=date(2023, 1, 2), store_id=1,
                                                          status="approved", updated_at=datetime(2023, 1, 1)))
        return states(conn, s)

    assert _query(sqlite_url, lambda conn, s: _commit(conn, approve, s)) == 1
    _run(_write_csv(head.head(2000), tmp_path / "b.csv.gz"), sqlite_url, replace=True)
    _check_totals(sqlite_url, head.head(2000))
    assert _query(sqlite_url, states) == 0  # cleared with the history it was planned on


def test_without_transaction_ids_and_with_text_ids(tmp_path, sqlite_url, head):
    """Orders become store + timestamp; non-integer product ids get dense ids, the same on a re-import."""
    df = head.head(2000).drop(columns=["transaction_id"]).assign(product_id="SKU-" + head["product_id"])
    cols = yaml.safe_load(MAPPING.read_text())["columns"]
    cols.pop("transaction_id")
    mapping = _mapping(tmp_path, columns=cols, retire_dates={"SKU-32": "2023-01-20", "SKU-999": "2023-02-01"})
    path = _write_csv(df, tmp_path / "nid.csv")
    report = _run(path, sqlite_url, mapping)
    assert report.orders == df.groupby(["store_id", "transaction_date", "transaction_time"]).ngroups
    assert report.warnings == ["retire_dates names products not in the file: SKU-999"]
    def retired(conn, s):
        p = s["products"]
        return conn.execute(select(p.c.product_name, p.c.retire_date).where(p.c.retire_date.is_not(None))).all()

    retired = _query(sqlite_url, retired)
    assert [(name, str(d)) for name, d in retired] == [("Ethiopia Rg", "2023-01-20")]
    ids1 = _query(sqlite_url, lambda c, s: sorted(c.execute(select(s["products"].c.product_id)).scalars()))
    _run(path, sqlite_url, mapping, replace=True)
    ids2 = _query(sqlite_url, lambda c, s: sorted(c.execute(select(s["products"].c.product_id)).scalars()))
    assert ids1 == ids2 == list(range(1, df["product_id"].nunique() + 1))


def test_encoding_from_the_mapping(tmp_path, sqlite_url, head):
    df = head.head(500).copy()
    df.loc[5, "store_location"] = "Café Astoria"
    path = tmp_path / "latin1.csv"
    df.to_csv(path, index=False, encoding="latin-1")
    report = _run(path, sqlite_url)  # mapping says utf-8: the undecodable row is rejected, not garbled
    assert report.rejected == {"undecodable text (not utf-8)": 1}
    report = _run(path, sqlite_url, _mapping(tmp_path, encoding="latin-1"), replace=True)
    assert report.rows_rejected == 0


def test_mapping_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="mapping.yaml: colour: Extra inputs are not permitted"):
        load_mapping(_mapping(tmp_path, colour="blue"))
    with pytest.raises(ConfigError, match="unknown time zone"):
        load_mapping(_mapping(tmp_path, timezone="America/Gotham"))
    with pytest.raises(ConfigError, match="unknown encoding"):
        load_mapping(_mapping(tmp_path, encoding="klingon-8"))
    assert load_mapping("configs/sources/maven_coffee.yaml").timezone == "America/New_York"


@pytest.mark.mysql
def test_mariadb_import_refuse_and_replace(tmp_path, mysql_url, head):
    path = _write_csv(head.head(3000), tmp_path / "head.csv.gz")
    report = _run(path, mysql_url)
    assert report.rows_loaded == 3000
    _check_totals(mysql_url, head.head(3000))
    first = _query(mysql_url, lambda c, s: c.execute(select(s["orders"].c.created_at).where(
        s["orders"].c.order_id == 1)).scalar_one())
    assert str(first) == "2023-01-01 12:06:11"
    with pytest.raises(DataError, match="already holds a history"):
        _run(path, mysql_url)
    _run(_write_csv(head.head(1000), tmp_path / "small.csv.gz"), mysql_url, replace=True)
    _check_totals(mysql_url, head.head(1000))


def test_full_maven_file_totals(sqlite_url, maven):
    report = _run(MAVEN, sqlite_url)
    assert (report.rows_read, report.rows_loaded, report.items, report.units) == (149_116, 149_116, 149_116, 214_470)
    assert (report.stores, report.products, report.period) == (3, 80, ("2023-01-01", "2023-06-30"))
    totals = _totals(sqlite_url)
    assert totals["units"] == 214_470 and totals["orders"] == 149_116
    assert totals["revenue"] == pytest.approx(698_812.33, abs=0.01)
    # A June sale (EDT, UTC-4): 07:xx local is 11:xx UTC.
    row = maven[(maven["transaction_date"] == "2023-06-01") & maven["transaction_time"].str.startswith("07:")].iloc[0]
    created = _query(sqlite_url, lambda c, s: c.execute(select(s["orders"].c.created_at).where(
        s["orders"].c.order_id == int(row["transaction_id"]))).scalar_one())
    assert str(created) == f"2023-06-01 11:{row['transaction_time'][3:]}"


def test_schema_mapping_is_respected(tmp_path, head):
    """The importer writes to the configured physical tables (here renamed), like every other stage."""
    url = f"sqlite:///{tmp_path / 'renamed.db'}"
    engine, schema = open_source(url, {"orders": "sales.t_order_pos"})
    try:
        import_pos(_write_csv(head.head(100), tmp_path / "s.csv"), MAPPING, engine, schema)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM t_order_pos").scalar_one() == 100
    finally:
        engine.dispose()


def test_timestamp_column_in_parquet_and_per_store_transactions(tmp_path, sqlite_url, head):
    """One local timestamp column instead of date + time; transaction ids scoped per store get dense ids."""
    df = head.head(500).copy()
    df["sold_at"] = pd.to_datetime(df["transaction_date"] + " " + df["transaction_time"])
    df = df.drop(columns=["transaction_date", "transaction_time"])
    df.to_parquet(tmp_path / "ts.parquet", index=False)
    cols = yaml.safe_load(MAPPING.read_text())["columns"]
    del cols["date"], cols["time"]
    mapping = _mapping(tmp_path, columns={**cols, "timestamp": "sold_at"}, transaction_scope="store")
    report = _run(tmp_path / "ts.parquet", sqlite_url, mapping)
    assert report.orders == 500 and report.rows_rejected == 0
    first = _query(sqlite_url, lambda c, s: c.execute(
        select(s["orders"]).order_by(s["orders"].c.created_at).limit(1)).one())
    assert str(first.created_at) == "2023-01-01 12:06:11" and first.order_id == 1
    ids = _query(sqlite_url, lambda c, s: sorted(c.execute(select(s["orders"].c.order_id)).scalars()))
    assert ids == list(range(1, 501))


def test_exact_duplicate_lines_are_not_loaded_twice(tmp_path, sqlite_url, head):
    """Issue 12: a log whose lines all appear twice used to load with the units doubled."""
    df = head.head(1000)
    path = _write_csv(pd.concat([df, df]), tmp_path / "twice.csv")
    with pytest.raises(DataError, match=r"line 1002: exact duplicate line \(repeats line 2\); 1000 of 2000 lines"):
        _run(path, sqlite_url)
    assert _totals(sqlite_url)["orders"] == 0
    report = _run(path, sqlite_url, max_reject_share=0.5)
    assert report.rejected == {"exact duplicate line": 1000}
    _check_totals(sqlite_url, df)  # units as in the log, not doubled


def test_reject_limit_with_missing_ids_is_one_line(tmp_path, sqlite_url, head):
    """Lines without a product id past the limit ended in TypeError ('float' object is not subscriptable)."""
    df = head.head(1000).copy()
    df.loc[df.index[:40:2], "product_id"] = ""
    path = _write_csv(df, tmp_path / "noid.csv")
    proc = subprocess.run(
        [sys.executable, "-m", "replenish.cli", "import-pos", str(path), "--mapping", str(MAPPING), "--db", sqlite_url],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "line 2: missing product_id; 20 of 1000 lines rejected (2.00% > max_reject_share 1.00%)" in lines[0]
    assert _totals(sqlite_url)["orders"] == 0
