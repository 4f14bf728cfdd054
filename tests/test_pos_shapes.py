"""Onboarding real point-of-sale logs of other shapes through a mapping file alone (``configs/sources/*.yaml``).

Each test writes a small log of one public shape (a French bakery's tickets, an item-per-row bakery, a pizza place's
four tables, a restaurant with a menu table and mangled dates, a wide delivery log), imports it with the example
mapping as shipped, and checks pieces and revenue against the log itself. Bad input ends in one line, exit 2, and
the database as it was.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import MetaData, create_engine, func, select

from forecasting.source.db import open_source
from forecasting.source.pos import import_pos, load_mapping
from replenish.cli import main

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "configs" / "sources"


# ------------------------------------------------------------------------------------------------------ the shapes


def french_bakery(folder: Path, seed: int = 1) -> tuple[Path, dict]:
    """Tickets of one bakery, July 2021: '0,90 €' prices, two returns and a '.' placeholder to be filtered."""
    rng = np.random.default_rng(seed)
    prices = {"BAGUETTE": 0.9, "CROISSANT": 1.1, "PAIN AU CHOCOLAT": 1.2, "TRADITIONAL BAGUETTE": 1.2,
              "CAFE OU EAU": 1.0}
    rows, ticket = [], 150000
    for day in pd.date_range("2021-07-01", "2021-07-20"):
        for hour in range(8, 14):
            ticket += 1
            for art in rng.choice(list(prices), size=rng.integers(1, 4), replace=False):
                qty = int(rng.integers(1, 4))
                rows.append([day.date().isoformat(), f"{hour:02d}:{rng.integers(60):02d}", f"{ticket}.0", art,
                             f"{qty}.0", f"{prices[art]:.2f}".replace(".", ",") + " €"])
    sales = pd.DataFrame(rows, columns=["date", "time", "ticket_number", "article", "Quantity", "unit_price"])
    extra = pd.DataFrame([["2021-07-02", "09:10", "150999.0", "BAGUETTE", "-1.0", "0,90 €"],
                          ["2021-07-03", "09:11", "151000.0", "CROISSANT", "-2.0", "1,10 €"],
                          ["2021-07-04", "09:12", "151001.0", ".", "1.0", "0,00 €"]], columns=sales.columns)
    log = pd.concat([sales.iloc[:10], extra, sales.iloc[10:]], ignore_index=True)
    path = folder / "bakery_sales.csv"
    log.to_csv(path)  # the index becomes the unnamed first column, as in the public file
    qty = sales["Quantity"].astype(float).astype(int)
    price = sales["unit_price"].str.replace(" €", "").str.replace(",", ".").astype(float)
    return path, {"lines": len(sales), "units": int(qty.sum()), "revenue": float((qty * price).sum()),
                  "orders": sales["ticket_number"].nunique(), "products": sales["article"].nunique()}


def bread_basket(folder: Path, days: int = 10, seed: int = 2, name: str = "BreadBasket_DMS.csv") -> tuple[Path, dict]:
    """One row per item sold; the same item twice in a ticket is two identical rows; NONE placeholders."""
    rng = np.random.default_rng(seed)
    items = ["Coffee", "Bread", "Tea", "Cake", "Pastry", "Scandinavian"]
    rows, txn = [], 0
    for day in pd.date_range("2016-10-30", periods=days):
        menu = items + (["Scone"] if day >= pd.Timestamp("2016-11-05") else [])  # a launch in the growing log
        for hour in range(9, 17):
            txn += 1
            t = f"{hour:02d}:{rng.integers(60):02d}:{rng.integers(60):02d}"
            picked = list(rng.choice(menu, size=rng.integers(1, 4)))
            if rng.random() < 0.3:
                picked.append(picked[0])  # a second piece of the same item: an identical row
            rows += [[day.date().isoformat(), t, str(txn), it] for it in picked]
            if rng.random() < 0.1:
                rows.append([day.date().isoformat(), t, str(txn), "NONE"])
    log = pd.DataFrame(rows, columns=["Date", "Time", "Transaction", "Item"])
    path = folder / name
    log.to_csv(path, index=False)
    sold = log[log["Item"] != "NONE"]
    return path, {"lines": len(sold), "units": len(sold), "revenue": 0.0, "orders": sold["Transaction"].nunique(),
                  "products": sold["Item"].nunique(), "frame": log}


def pizza_place(folder: Path, seed: int = 3) -> tuple[Path, dict]:
    """Order lines -> orders (date, time), pizzas (size, price) -> pizza types (name, category; cp1252)."""
    rng = np.random.default_rng(seed)
    types = pd.DataFrame({
        "pizza_type_id": ["bbq_ckn", "jalapeno", "nduja"],
        "name": ["The Barbecue Chicken Pizza", "The Jalapeño Pizza", "The \u2018Nduja Pizza"],
        "category": ["Chicken", "Veggie", "Supreme"],
        "ingredients": ["Chicken, Onions", "Jalapeño Peppers, Mozzarella", "\u2018Nduja Salami, Garlic"],
    })
    pizzas = pd.DataFrame([(f"{t}_{s.lower()}", t, s, p) for t in types["pizza_type_id"]
                           for s, p in (("S", 12.5), ("M", 16.75), ("L", 20.5))],
                          columns=["pizza_id", "pizza_type_id", "size", "price"])
    orders = pd.DataFrame({"order_id": range(1, 61)})
    stamps = pd.Timestamp("2015-01-01 11:00") + pd.to_timedelta(np.sort(rng.integers(0, 14 * 24 * 60, 60)), "min")
    orders["date"], orders["time"] = stamps.strftime("%Y-%m-%d"), stamps.strftime("%H:%M:%S")
    lines = pd.DataFrame({"order_id": np.repeat(orders["order_id"], rng.integers(1, 4, len(orders)))})
    lines.insert(0, "order_details_id", range(1, len(lines) + 1))
    lines["pizza_id"] = rng.choice(pizzas["pizza_id"], len(lines))
    lines["quantity"] = rng.integers(1, 3, len(lines))
    lines.to_csv(folder / "order_details.csv", index=False)
    orders.to_csv(folder / "orders.csv", index=False)
    pizzas.to_csv(folder / "pizzas.csv", index=False)
    types.to_csv(folder / "pizza_types.csv", index=False, encoding="cp1252")
    price = lines["pizza_id"].map(pizzas.set_index("pizza_id")["price"])
    return folder / "order_details.csv", {
        "lines": len(lines), "units": int(lines["quantity"].sum()), "revenue": float((lines["quantity"] * price).sum()),
        "orders": lines["order_id"].nunique(), "products": lines["pizza_id"].nunique()}


def restaurant(folder: Path, seed: int = 4, missing_share: float = 0.01) -> tuple[Path, dict]:
    """Order lines with '1/14/23' and spreadsheet-mangled '2001-05-23' dates, 12-hour times; a menu table."""
    rng = np.random.default_rng(seed)
    menu = pd.DataFrame({"menu_item_id": [101, 102, 103, 104], "item_name": ["Hamburger", "Tofu Pad Thai",
                         "Chicken Tacos", "Cheesecake"], "category": ["American", "Asian", "Mexican", "Dessert"],
                         "price": [12.95, 14.5, 11.95, 7.0]})
    n = 200
    stamps = pd.Timestamp("2023-01-01 10:30") + pd.to_timedelta(np.sort(rng.integers(0, 60 * 24 * 60, n)), "min")
    us = [f"{t.month}/{t.day}/{t.strftime('%y')}" for t in stamps]
    mangled = [f"20{t.month:02d}-{t.day:02d}-{t.strftime('%y')}" for t in stamps]
    use_mangled = rng.random(n) < 0.3
    lines = pd.DataFrame({
        "order_details_id": range(1, n + 1), "order_id": np.arange(n) // 2 + 1,
        "order_date": np.where(use_mangled, mangled, us),
        "order_time": [t.strftime("%I:%M:%S %p").lstrip("0") for t in stamps],
        "item_id": rng.choice(menu["menu_item_id"], n).astype(str),
    })
    missing = rng.random(n) < missing_share
    lines.loc[missing, "item_id"] = ""
    lines.to_csv(folder / "order_details.csv", index=False)
    menu.to_csv(folder / "menu_items.csv", index=False)
    sold = lines[~missing]
    price = sold["item_id"].astype(int).map(menu.set_index("menu_item_id")["price"])
    return folder / "order_details.csv", {
        "lines": len(sold), "units": len(sold), "revenue": float(price.sum()), "orders": sold["order_id"].nunique(),
        "products": sold["item_id"].nunique(), "stamps": stamps, "mangled": use_mangled, "missing": int(missing.sum())}


DELIVERY_PRICES = {"angbutter": 4800, "plain bread": 3500, "americano": 4000, "croissant": 3500, "milk tea": 4500}


def delivery_bakery(folder: Path, seed: int = 5) -> tuple[Path, dict]:
    """One row per order, one quantity column per product (empty: none), the order total in won."""
    rng = np.random.default_rng(seed)
    n = 80
    stamps = pd.Timestamp("2019-07-11 11:00") + pd.to_timedelta(np.sort(rng.integers(0, 20 * 24 * 60, n)), "min")
    log = pd.DataFrame({"datetime": stamps.strftime("%Y-%m-%d %H:%M"), "day of week": stamps.strftime("%a"),
                        "total": 0, "place": rng.choice(["", "Dongbu-dong", "Hyoja-dong"], n)})
    qty = pd.DataFrame({p: rng.choice([0, 0, 1, 2], n) for p in DELIVERY_PRICES})
    qty.iloc[:, 0] = np.where(qty.sum(axis=1) == 0, 1, qty.iloc[:, 0])  # every order buys something
    log["total"] = (qty * pd.Series(DELIVERY_PRICES)).sum(axis=1)
    for p in DELIVERY_PRICES:
        log[p] = qty[p].map(lambda v: "" if v == 0 else str(v))
    path = folder / "Bakery_Sales.csv"
    log.to_csv(path, index=False)
    return path, {"lines": int((qty > 0).to_numpy().sum()), "units": int(qty.to_numpy().sum()),
                  "revenue": float(log["total"].sum()), "orders": n, "products": len(DELIVERY_PRICES)}


SHAPES = {"french_bakery": french_bakery, "bread_basket": bread_basket, "pizza_place": pizza_place,
          "restaurant_orders": restaurant, "delivery_bakery": delivery_bakery}


# ------------------------------------------------------------------------------------------------------ helpers


def _import(path: Path, url: str, mapping: Path | str, **kw):
    engine, schema = open_source(url)
    try:
        return import_pos(path, mapping, engine, schema, **kw)
    finally:
        engine.dispose()


def _stored(url: str) -> dict[str, float]:
    """Pieces, lines, orders, products and revenue as stored in the source."""
    engine, schema = open_source(url)
    try:
        with engine.connect() as conn:
            items, orders = schema["order_items"], schema["orders"]
            return {
                "lines": conn.execute(select(func.count()).select_from(items)).scalar_one(),
                "units": int(conn.execute(select(func.sum(items.c.quantity))).scalar_one() or 0),
                "revenue": float(conn.execute(select(func.sum(items.c.quantity * items.c.unit_price))).scalar_one()
                                 or 0),
                "paid": float(conn.execute(select(func.sum(orders.c.pay_amount))).scalar_one() or 0),
                "orders": conn.execute(select(func.count()).select_from(orders)).scalar_one(),
                "products": conn.execute(select(func.count()).select_from(schema["products"])).scalar_one(),
            }
    finally:
        engine.dispose()


def _check(url: str, want: dict) -> None:
    got = _stored(url)
    assert (got["lines"], got["units"], got["orders"], got["products"]) == (
        want["lines"], want["units"], want["orders"], want["products"])
    assert got["revenue"] == pytest.approx(want["revenue"], abs=0.01)
    assert got["paid"] == pytest.approx(want["revenue"], abs=0.01)


def _snapshot(url: str) -> dict[str, list]:
    """Every row of every table, sorted: 'the database as it was'."""
    engine = create_engine(url)
    md = MetaData()
    md.reflect(engine)
    with engine.connect() as conn:
        out = {name: sorted(map(repr, conn.execute(t.select()).all())) for name, t in md.tables.items()}
    engine.dispose()
    return out


def _cli(capsys, *args: str) -> tuple[int, list[str]]:
    """Run the real CLI entry point in-process; (exit code, non-empty stderr lines)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [ln for ln in err.splitlines() if ln.strip()]


def _variant(tmp_path: Path, name: str, **over) -> Path:
    """The shipped example mapping with some keys replaced (``a__b`` reaches into section a; None removes)."""
    data = yaml.safe_load((SOURCES / f"{name}.yaml").read_text(encoding="utf-8"))
    for key, value in over.items():
        node, *path = key.split("__")
        target = data
        for part in [node, *path][:-1]:
            target = target.setdefault(part, {})
        last = [node, *path][-1]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    out = tmp_path / f"{name}_variant.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------------------------ the tests


def test_every_example_mapping_loads():
    names = sorted(p.stem for p in SOURCES.glob("*.yaml"))
    assert set(SHAPES) <= set(names)
    for name in names:
        assert load_mapping(SOURCES / f"{name}.yaml").name == name


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_imports_through_its_mapping(tmp_path, sqlite_url, shape):
    path, want = SHAPES[shape](tmp_path)
    report = _import(path, sqlite_url, SOURCES / f"{shape}.yaml")
    assert report.rows_rejected == 0, report.rejected
    assert (report.rows_loaded, report.units) == (want["lines"], want["units"])
    assert report.revenue == pytest.approx(want["revenue"], abs=0.01)
    _check(sqlite_url, want)
    # dense ids: text keys number 1..n
    engine, schema = open_source(sqlite_url)
    with engine.connect() as conn:
        ids = sorted(conn.execute(select(schema["products"].c.product_id)).scalars())
        stores = conn.execute(select(schema["stores"])).all()
    engine.dispose()
    if shape != "restaurant_orders":  # the restaurant's item ids are the source's own integers
        assert ids == list(range(1, len(ids) + 1))
    assert len(stores) == 1 and stores[0].store_id == 1


def test_french_bakery_filters_and_calendar_reach_the_features(tmp_path, sqlite_url):
    from features.job import build_features
    from forecasting.config import FeaturesConfig

    path, want = french_bakery(tmp_path)
    report = _import(path, sqlite_url, SOURCES / "french_bakery.yaml")
    assert report.filtered == {"exclude_pattern Quantity": 2, "exclude article": 1}
    assert report.holidays == "FR" and report.rows_read == want["lines"] + 3
    engine, schema = open_source(sqlite_url)
    try:
        build_features(engine, schema, str(tmp_path / "features"), config=FeaturesConfig(
            out_dir=str(tmp_path / "features"), now="2021-08-01T00:00:00"))
    finally:
        engine.dispose()
    daily = pd.read_parquet(tmp_path / "features" / "daily")
    hol = daily.groupby("date")["is_holiday"].first()
    assert hol[pd.Timestamp("2021-07-14")]  # Bastille Day
    assert not hol[pd.Timestamp("2021-07-05")] and not hol[pd.Timestamp("2021-07-04")]  # no US Independence Day


def test_configured_calendar_that_does_not_exist_is_one_line(tmp_path, capsys, monkeypatch):
    """A source without a stored calendar (a mapping without holidays) uses the configuration's: FR + the default
    subdivision NY is refused in one line, not a NotImplementedError traceback."""
    url = f"sqlite:///{tmp_path / 'src.db'}"
    path, _ = bread_basket(tmp_path, days=3)
    _import(path, url, _variant(tmp_path, "bread_basket", holidays=None))
    monkeypatch.setenv("REPLENISH__FEATURES__HOLIDAY_COUNTRY", "FR")
    monkeypatch.setenv("REPLENISH__FEATURES__NOW", "2017-01-01T00:00:00")
    code, err = _cli(capsys, "features", "build", "--db", url, "--out", tmp_path / "f")
    assert code == 2 and len(err) == 1
    assert "FR has no subdivision 'NY'" in err[0] and "none for the whole country" in err[0]
    monkeypatch.setenv("REPLENISH__FEATURES__HOLIDAY_SUBDIV", "")
    code, err = _cli(capsys, "features", "build", "--db", url, "--out", tmp_path / "f", "--json")
    assert code == 0, err


def test_restaurant_mixed_dates_and_12_hour_times(tmp_path, sqlite_url):
    path, want = restaurant(tmp_path)
    report = _import(path, sqlite_url, SOURCES / "restaurant_orders.yaml")
    assert report.filtered == {"exclude item_id": want["missing"]} and want["mangled"].sum() > 20
    engine, schema = open_source(sqlite_url)
    with engine.connect() as conn:
        created = pd.Series(dict(conn.execute(select(schema["orders"].c.order_id,
                                                      schema["orders"].c.created_at)).all()))
    engine.dispose()
    lines = pd.read_csv(path, dtype=str, keep_default_na=False).assign(stamp=want["stamps"])
    sold = lines[lines["item_id"] != ""]
    first = sold.groupby(sold["order_id"].astype(int))["stamp"].min()  # an order starts at its first line
    utc = first.dt.tz_localize("America/New_York").dt.tz_convert("UTC").dt.tz_localize(None)
    assert len(created) == len(utc) and (pd.to_datetime(created.sort_index()) == utc.sort_index()).all()


def test_pizza_place_joins_and_cp1252_names(tmp_path, sqlite_url):
    path, _ = pizza_place(tmp_path)
    _import(path, sqlite_url, SOURCES / "pizza_place.yaml")
    engine, schema = open_source(sqlite_url)
    with engine.connect() as conn:
        p = schema["products"]
        names = set(conn.execute(select(p.c.product_name)).scalars())
        cats = set(conn.execute(select(p.c.category)).scalars())
    engine.dispose()
    assert {"The Jalapeño Pizza", "The \u2018Nduja Pizza"} <= names and cats <= {"Chicken", "Veggie", "Supreme"}


@pytest.mark.mysql
def test_pizza_place_on_mariadb(tmp_path, mysql_url):
    path, want = pizza_place(tmp_path)
    _import(path, mysql_url, SOURCES / "pizza_place.yaml")
    _check(mysql_url, want)


@pytest.mark.mysql
def test_growing_log_keeps_ids_on_mariadb(tmp_path, mysql_url):
    """Case-different keys stay apart (binary collation) and ids survive a --replace re-import."""
    _growing_log(tmp_path, mysql_url)


def test_growing_log_keeps_ids(tmp_path, sqlite_url):
    _growing_log(tmp_path, sqlite_url)


def _growing_log(tmp_path: Path, url: str) -> None:
    first, want1 = bread_basket(tmp_path, days=4, name="week1.csv")
    frame = want1["frame"]
    frame.loc[len(frame)] = ["2016-11-02", "10:00:00", "999", "coffee"]  # lower case: another key
    frame.to_csv(first, index=False)
    _import(first, url, SOURCES / "bread_basket.yaml")

    def ids() -> dict[str, int]:
        engine, schema = open_source(url)
        with engine.connect() as conn:
            p = schema["products"]
            out = dict(conn.execute(select(p.c.product_name, p.c.product_id)).all())
        engine.dispose()
        return out

    before = ids()
    assert sorted(before.values()) == list(range(1, len(before) + 1)) and before["coffee"] != before["Coffee"]
    grown, _ = bread_basket(tmp_path, days=10, name="week2.csv")  # the same first days, then more
    extra = pd.read_csv(grown, dtype=str)
    pd.concat([extra, pd.DataFrame([["2016-11-08", "10:00:00", "999", "coffee"]], columns=extra.columns)]).to_csv(
        grown, index=False)
    _import(grown, url, SOURCES / "bread_basket.yaml", replace=True)
    after = ids()
    assert {k: after[k] for k in before} == before  # every product keeps its id
    assert after["Scone"] == len(before) + 1  # the new one gets the next


def test_dry_run_summary(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'dry.db'}"
    path, want = restaurant(tmp_path)
    main(["import-pos", str(path), "--mapping", str(SOURCES / "restaurant_orders.yaml"), "--db", url,
          "--dry-run", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert not (tmp_path / "dry.db").exists()  # a dry run creates no database
    assert report["dry_run"] and (report["rows_loaded"], report["units"]) == (want["lines"], want["units"])
    assert report["filtered"] == {"exclude item_id": want["missing"]}
    assert report["top_products"][0]["units"] == max(p["units"] for p in report["top_products"])
    assert report["period"][0] == "2023-01-01" and report["store_names"] == ["Restaurant"]
    # against an existing history: read only, and it says the import would need --replace
    _import(path, url, SOURCES / "restaurant_orders.yaml")
    before = _snapshot(url)
    main(["import-pos", str(path), "--mapping", str(SOURCES / "restaurant_orders.yaml"), "--db", url, "--dry-run"])
    out = " ".join(capsys.readouterr().out.split())
    assert "would import" in out and "top 1:" in out and "pieces" in out and "already holds a history" in out
    assert _snapshot(url) == before


# ------------------------------------------------------------------------------------------------------ bad input


def _refused(capsys, tmp_path: Path, url: str, path: Path, mapping: Path, *extra: str) -> str:
    """The import fails with one line and exit 2, and leaves the database byte for byte as it was."""
    before = _snapshot(url)
    code, err = _cli(capsys, "import-pos", path, "--mapping", mapping, "--db", url, "--replace", *extra)
    assert code == 2 and len(err) == 1, err
    assert _snapshot(url) == before
    return err[0]


@pytest.fixture
def loaded(tmp_path, sqlite_url):
    """A source that already holds a history (so 'unchanged' means something)."""
    folder = tmp_path / "good"
    folder.mkdir()
    path, _ = pizza_place(folder)
    _import(path, sqlite_url, SOURCES / "pizza_place.yaml")
    return sqlite_url


def test_reject_limit_exceeded_is_one_line(tmp_path, capsys, loaded):
    """Lines without a product id past the 1% limit (the issue's 137 of 12,234): one line, not a TypeError."""
    path, want = restaurant(tmp_path, missing_share=0.03)
    mapping = _variant(tmp_path, "restaurant_orders", filters=None)
    msg = _refused(capsys, tmp_path, loaded, path, mapping)
    assert f"missing item_id; {want['missing']} of 200 lines rejected" in msg and "max_reject_share 1.00%" in msg


def test_side_table_key_that_matches_nothing(tmp_path, capsys, loaded):
    path, _ = pizza_place(tmp_path)
    pizzas = pd.read_csv(tmp_path / "pizzas.csv")
    pizzas["pizza_id"] = pizzas["pizza_id"].str.upper()
    pizzas.to_csv(tmp_path / "pizzas.csv", index=False)
    msg = _refused(capsys, tmp_path, loaded, path, SOURCES / "pizza_place.yaml")
    assert "tables.pizzas: no line's pizza_id matches a pizza_id of pizzas.csv" in msg


def test_side_table_with_a_repeated_key(tmp_path, capsys, loaded):
    path, _ = pizza_place(tmp_path)
    with (tmp_path / "orders.csv").open("a") as fh:
        fh.write("7,2015-01-01,12:00:00\n")
    msg = _refused(capsys, tmp_path, loaded, path, SOURCES / "pizza_place.yaml")
    assert "orders.csv: line 62: key '7' appears twice" in msg


def test_format_that_parses_no_row(tmp_path, capsys, loaded):
    path, _ = restaurant(tmp_path)
    mapping = _variant(tmp_path, "restaurant_orders", date_format=["%d.%m.%Y", "%Y%m%d"])
    msg = _refused(capsys, tmp_path, loaded, path, mapping)
    assert "date_format ['%d.%m.%Y', '%Y%m%d'] parses no value of column 'order_date' (line 2:" in msg


def test_wide_column_that_is_not_numeric(tmp_path, capsys, loaded):
    path, _ = delivery_bakery(tmp_path)
    log = pd.read_csv(path, dtype=str, keep_default_na=False)
    log["jam"] = np.where(np.arange(len(log)) % 3 == 0, "yes", "")
    log.to_csv(path, index=False)
    msg = _refused(capsys, tmp_path, loaded, path, SOURCES / "delivery_bakery.yaml")
    assert "line 2: wide column 'jam' is not numeric ('yes')" in msg


def test_duplicates_quarantined_or_refused(tmp_path, capsys, loaded):
    path, want = french_bakery(tmp_path)
    text = path.read_text(encoding="utf-8").splitlines()
    text.append(text[21])  # line 22 (data row 20) once more, byte for byte
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    dup = pd.read_csv(path, dtype=str)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    report = _import(path, url, SOURCES / "french_bakery.yaml")
    assert report.rejected == {"exact duplicate line": 1} and report.first_rejected["exact duplicate line"] == (
        f"line {len(dup) + 1}")
    _check(url, want)  # pieces not doubled
    msg = _refused(capsys, tmp_path, loaded, path, _variant(tmp_path, "french_bakery",
                                                            checks={"duplicate_lines": "refuse"}))
    assert f"line {len(dup) + 1}: exact duplicate line (repeats line 22)" in msg and "checks.duplicate_lines" in msg


def test_implausible_values_quarantined_or_refused(tmp_path, capsys, loaded):
    path, want = pizza_place(tmp_path)
    lines = pd.read_csv(path, dtype=str)
    orders = pd.read_csv(tmp_path / "orders.csv", dtype=str)
    orders.loc[0, "date"] = "2099-01-01"  # order 1
    orders.to_csv(tmp_path / "orders.csv", index=False)
    lines.loc[len(lines) - 1, "quantity"] = "1e14"
    lines.to_csv(path, index=False)
    pizzas = pd.read_csv(tmp_path / "pizzas.csv", dtype=str)
    pizzas.loc[len(pizzas)] = ["gold_l", "bbq_ckn", "L", "1e308"]
    pizzas.to_csv(tmp_path / "pizzas.csv", index=False)
    with (path).open("a") as fh:
        fh.write(f"{len(lines) + 1},60,gold_l,1\n")
    mapping = _variant(tmp_path, "pizza_place", max_reject_share=0.2)
    url = f"sqlite:///{tmp_path / 'q.db'}"
    report = _import(path, url, mapping)
    in_2099 = int((lines["order_id"] == "1").sum())
    assert report.rejected == {
        f"date outside 2000-01-01..{(pd.Timestamp.now('UTC') + pd.Timedelta(days=1)).date()} "
        "(checks.earliest_date / latest_date)": in_2099,
        "quantity above 10,000 pieces (checks.max_quantity) in quantity": 1,
        "unit price above 10,000.00 USD (checks.max_unit_price) in price": 1,
    }
    paid = _stored(url)["paid"]
    assert np.isfinite(paid) and paid < 1e6
    msg = _refused(capsys, tmp_path, loaded, path, _variant(tmp_path, "pizza_place", max_reject_share=0.2,
                                                            checks={"implausible": "refuse"}))
    assert "line 2: date outside 2000-01-01" in msg and "(checks.implausible: refuse)" in msg


def test_gzip_that_unpacks_past_the_limit(tmp_path, capsys, loaded):
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"Date,Time,Transaction,Item\n")
        block = b"2016-10-30,09:58:11,1,Bread\n" * 40_000
        for _ in range(3):  # ~3.4 MB unpacked
            fh.write(block)
    assert path.stat().st_size < 100_000
    mapping = _variant(tmp_path, "bread_basket", checks={"max_file_mb": 2, "duplicate_lines": "keep"})
    msg = _refused(capsys, tmp_path, loaded, path, mapping)
    assert "bomb.csv.gz: unpacks to more than 2 MB (checks.max_file_mb)" in msg


@pytest.mark.parametrize(("edit", "expected"), [
    ({"date_format": "%Q%Q"}, "date_format: Value error, '%Q%Q': unknown directive '%Q'"),
    ({"time_format": "%H:%M %p"}, "%p (AM/PM) needs the 12-hour %I"),
    ({"date_format": "YYYY-MM-DD"}, "'YYYY-MM-DD' has no % directive"),
    ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ({"materials": {"supplier": {"delivery_weekdays": "Mon,Funday"}}}, "unknown delivery weekday 'funday'"),
    ({"holidays": {"country": "FR", "subdivision": "NY"}}, "FR has no subdivision 'NY'"),
    ({"filters": [{"column": "Item", "exclude": ["NONE"], "keep": ["x"]}]}, "give exactly one of keep, exclude"),
    ({"columns": {"date": "Date", "time": "Time"}}, "columns.store_id: Field required (+3 more: columns.product_id, "
                                                    "columns.quantity, columns.price)"),
    ({"columns__store_id": [1]}, "columns.store_id: expected a column name, a number or {value: ...}"),
], ids=["bad-directive", "pm-with-24h", "no-directive", "unknown-key", "weekday", "subdivision", "filter",
        "missing-columns", "column-or-constant"])
def test_bad_mapping_is_one_line(tmp_path, capsys, loaded, edit, expected):
    path, _ = bread_basket(tmp_path, days=2)
    msg = _refused(capsys, tmp_path, loaded, path, _variant(tmp_path, "bread_basket", **edit))
    assert expected in msg, msg


def test_mapping_not_utf8_is_one_line(tmp_path, capsys, loaded):
    path, _ = bread_basket(tmp_path, days=2)
    mapping = tmp_path / "latin1.yaml"
    mapping.write_bytes((SOURCES / "bread_basket.yaml").read_text(encoding="utf-8").replace(
        "no prices", "no prices, café").encode("latin-1"))
    msg = _refused(capsys, tmp_path, loaded, path, mapping)
    assert "latin1.yaml: not UTF-8 text (byte 0xe9" in msg and "save the mapping as UTF-8" in msg


def test_first_row_with_an_extra_field(tmp_path, capsys, loaded):
    """pandas would silently turn the extra leading field into an index (and the line numbers into tuples)."""
    path, _ = bread_basket(tmp_path, days=2)
    text = path.read_text().splitlines()
    text[1] += ",Bread"
    path.write_text("\n".join(text) + "\n")
    msg = _refused(capsys, tmp_path, loaded, path, SOURCES / "bread_basket.yaml")
    assert "line 2: expected 4 fields, saw 5" in msg
