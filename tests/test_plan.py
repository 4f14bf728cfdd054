"""``replenish plan`` and ``override`` on the small generated world: reports, CSV, write-back (replace, never
duplicate, all or nothing), overrides kept beside the engine's numbers, one failing store not stopping the others."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import date

import pandas as pd
import pytest
from sqlalchemy import func, select
from test_plan_world import SmallWorld, run_cli, small_world  # noqa: F401

from forecasting.source.db import init_db, make_engine, open_source
from forecasting.source.schema import build_schema
from planning.overrides import Override, apply_overrides
from planning.plan import find_cache, run_plan
from planning.writeback import proposal_rows, read_proposals, write_proposals

D = date(2025, 12, 1)  # the order date after the small history


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


@pytest.fixture(scope="module")
def planned(world, tmp_path_factory):
    """The CLI plan for D on a copy of the source (tests below mutate it)."""
    root = tmp_path_factory.mktemp("plan")
    db = root / "source.db"
    shutil.copy(world.root / "source.db", db)
    url = f"sqlite:///{db}"
    code, out, err = run_cli("plan", "--date", D.isoformat(), "--db", url, "--config", str(world.config), "--out",
                             str(root / "reports"), "--json")
    assert code == 0, err
    return url, root / "reports" / D.isoformat(), json.loads(out)


def _count(url: str, **where) -> int:
    engine, schema = open_source(url)
    t = schema["proposals"]
    stmt = select(func.count()).select_from(t)
    for k, v in where.items():
        stmt = stmt.where(t.c[k] == v)
    with engine.connect() as conn:
        n = conn.execute(stmt).scalar()
    engine.dispose()
    return int(n)


def test_plan_writes_a_report_and_csv_per_store_and_the_proposal_table(planned):
    url, out, summary = planned
    assert summary["order_date"] == D.isoformat() and not summary["failures"]
    stores = summary["stores"]
    assert set(stores) == {"1", "2", "3"}
    assert (out / "index.html").is_file()
    total = 0
    for sid, info in stores.items():
        html = (out / f"store_{sid}.html").read_text()
        assert html.index("Exceptions first") < html.index("Order proposal: packs to order") < html.index("<img")
        assert "data:image/png;base64," in html
        rows = list(csv.DictReader((out / f"store_{sid}.csv").open()))
        assert len(rows) == info["lines"] > 0
        assert {"packs", "planner_qty", "override_reason", "explanation", "exceptions"} <= set(rows[0])
        assert all(float(r["qty_units"]) == pytest.approx(int(r["packs"]) * float(r["pack_size"])) for r in rows)
        total += info["lines"]
    assert summary["written"]["inserted"] == total == _count(url, proposal_date=D)
    engine, schema = open_source(url)
    df = read_proposals(engine, schema, D)
    detail = json.loads(df["explanation"].iloc[0])
    assert {"explanation", "reason_codes", "exceptions", "inventory_position"} <= set(detail)
    assert df["planner_qty"].isna().all() and (df["model_version"] == summary["model_version"]).all()


def test_rerun_replaces_never_duplicates_and_keeps_other_stores(planned, world):
    url, out, summary = planned
    before = _count(url, proposal_date=D)
    code, o, err = run_cli("plan", "--date", D.isoformat(), "--store", "2", "--db", url, "--config",
                           str(world.config), "--out", str(out.parent), "--json")
    assert code == 0, err
    again = json.loads(o)
    assert again["written"]["deleted"] == again["written"]["inserted"] == summary["stores"]["2"]["lines"]
    assert _count(url, proposal_date=D) == before


def _rows(path) -> list[dict]:
    """A plan CSV's rows, the lines that can be ordered today first (only those take an override)."""
    rows = list(csv.DictReader(path.open()))
    return sorted(rows, key=lambda r: r["is_order_day"] != "True")


def test_override_single_and_import_keep_both_numbers(planned, world, tmp_path):
    url, out, _ = planned
    rows = _rows(out / "store_1.csv")
    a, b = rows[0], rows[1]
    code, _, err = run_cli("override", "--date", D.isoformat(), "--store", "1", "--material", a["material_id"],
                           "--qty", "7", "--reason", "promo next week", "--by", "ana", "--db", url)
    assert code == 0, err
    edited = tmp_path / "edited.csv"
    with edited.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "planner_qty": "3", "override_reason": "delivery issue"} if r is b else r)
    code, _, err = run_cli("override", "--import", str(edited), "--db", url)
    assert code == 0, err
    engine, schema = open_source(url)
    df = read_proposals(engine, schema, D, [1]).set_index("material_id")
    ra, rb = df.loc[int(a["material_id"])], df.loc[int(b["material_id"])]
    assert (ra["planner_qty"], ra["override_reason"], ra["overridden_by"]) == (7.0, "promo next week", "ana")
    assert ra["packs"] == int(a["packs"]) and rb["packs"] == int(b["packs"])  # the engine's number is kept
    assert rb["planner_qty"] == 3.0 and rb["override_reason"] == "delivery issue"
    # a re-plan of the date refreshes the engine's numbers and keeps the planner's
    code, o, err = run_cli("plan", "--date", D.isoformat(), "--store", "1", "--db", url, "--config",
                           str(world.config), "--out", str(tmp_path / "r"), "--json")
    assert code == 0, err and json.loads(o)["written"]["overrides_kept"] == 2
    df = read_proposals(engine, schema, D, [1]).set_index("material_id")
    assert df.loc[int(a["material_id"]), "planner_qty"] == 7.0


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"planner_qty": "two"}, "line 3: planner_qty 'two' is not a number of packs"),
        ({"planner_qty": "-1"}, "must be a whole number of packs"),
        ({"planner_qty": "1.5"}, "must be a whole number of packs"),
        ({"planner_qty": "4", "override_reason": ""}, "planner_qty set without an override_reason"),
        ({"planner_qty": "4", "material_id": "99999"}, "no proposal for 2025-12-01 store 3 material 99999"),
        ({"planner_qty": "4", "order_date": "2025-13-01"}, "date '2025-13-01' is not YYYY-MM-DD"),
    ],
)
def test_bad_override_rows_change_nothing(planned, tmp_path, edit, message):
    url, out, _ = planned
    engine, schema = open_source(url)
    before = read_proposals(engine, schema, D)
    rows = _rows(out / "store_3.csv")
    edited = tmp_path / "bad.csv"
    with edited.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow({**rows[0], "planner_qty": "2", "override_reason": "fine row"})  # a good row first
        w.writerow({**rows[1], "override_reason": "x", **edit})
    code, _, err = run_cli("override", "--import", str(edited), "--db", url)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    pd.testing.assert_frame_equal(read_proposals(engine, schema, D), before)


def test_override_usage_errors(planned):
    url, _, _ = planned
    code, _, err = run_cli("override", "--date", D.isoformat(), "--store", "1", "--db", url)
    assert code == 2 and "missing --material, --qty, --reason" in err
    code, _, err = run_cli("override", "--date", "2025-11-01", "--store", "1", "--material", "1", "--qty", "1",
                           "--reason", "r", "--db", url)
    assert code == 2 and "run `replenish plan --date 2025-11-01` first" in err


def test_one_failing_store_does_not_stop_the_others(world, tmp_path):
    db = tmp_path / "source.db"
    shutil.copy(world.root / "source.db", db)
    url = f"sqlite:///{db}"
    cache = find_cache(world.forecasts, D)
    fc = tmp_path / "fc"
    shutil.copytree(world.forecasts, fc)
    target = fc / cache.model_version / cache.data_date.isoformat() / "forecasts.parquet"
    frame = pd.read_parquet(target)
    frame.loc[frame["store_id"] == 2, "mean"] = -1.0  # store 2's forecasts break the contract
    frame.to_parquet(target)
    code, out, err = run_cli("plan", "--date", D.isoformat(), "--db", url, "--config", str(world.config),
                             "--forecasts", str(fc), "--out", str(tmp_path / "r"), "--json")
    assert code == 1 and "store 2 failed" in err and "non-negative" in err
    summary = json.loads(out)
    assert set(summary["stores"]) == {"1", "3"} and set(summary["failures"]) == {"2"}
    assert _count(url, proposal_date=D, store_id=2) == 0 and _count(url, proposal_date=D, store_id=1) > 0
    assert "not planned" in (tmp_path / "r" / D.isoformat() / "index.html").read_text()


def test_plan_user_errors_are_one_line(world, tmp_path):
    code, _, err = run_cli("plan", "--date", "2025-11-02", "--db", world.db_url, "--config", str(world.config),
                           "--forecasts", str(tmp_path / "none"), "--no-write")
    assert code == 2 and "no cached forecasts" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("plan", "--date", "12/01/2025", "--db", world.db_url, "--config", str(world.config))
    assert code == 2 and "not a date" in err
    code, _, err = run_cli("plan", "--date", D.isoformat(), "--store", "42", "--db", world.db_url, "--config",
                           str(world.config), "--no-write", "--out", str(tmp_path))
    assert code == 2 and "unknown store 42" in err


# ---------------------------------------------------------------------------------------------------------------
# MariaDB: replace, never duplicate; a crash mid-write leaves the previous proposal intact
# ---------------------------------------------------------------------------------------------------------------

PLAN_TABLES = ("stores", "products", "suppliers", "materials", "bom", "inventory_snapshots", "replenishment_orders")


def _copy_source(src_url: str, dst_url: str) -> None:
    """The tables a plan reads, from the SQLite world into a scratch MariaDB database (recent rows only)."""
    schema = build_schema()
    src, dst = make_engine(src_url, schema), make_engine(dst_url, schema)
    init_db(dst, schema)
    since = date(2025, 10, 1)
    with src.connect() as a, dst.begin() as b:
        for name in PLAN_TABLES:
            t = schema[name]
            stmt = select(t)
            if name == "inventory_snapshots":
                stmt = stmt.where(t.c.snapshot_date >= since)
            if name == "replenishment_orders":
                stmt = stmt.where(t.c.ordered_on >= since)
            rows = [dict(r._mapping) for r in a.execute(stmt)]
            if rows:
                b.execute(t.insert(), rows)
    src.dispose()
    dst.dispose()


@pytest.mark.mysql
def test_mariadb_plan_replaces_and_a_crash_keeps_the_previous_proposal(world, mysql_url, tmp_path):
    _copy_source(world.db_url, mysql_url)
    engine, schema = open_source(mysql_url)
    res = run_plan(world.settings, engine, schema, D, out_dir=tmp_path, reports=False)
    n = res.written["inserted"]
    assert not res.failures and n == _count(mysql_url, proposal_date=D) > 0
    again = run_plan(world.settings, engine, schema, D, reports=False)
    assert again.written["deleted"] == n and _count(mysql_url, proposal_date=D) == n  # replaced, not duplicated
    first = res.stores[0].lines
    apply_overrides(engine, schema, [Override(D, 1, int(first.loc[first["is_order_day"], "material_id"].iloc[0]), 5,
                                              "why")], "ana")
    before = read_proposals(engine, schema, D)

    # a row violating NOT NULL in the second batch: the whole replacement is rolled back
    lines = pd.concat([sp.lines for sp in res.stores], ignore_index=True)
    rows = proposal_rows(lines, None, pd.Timestamp("2025-12-01 06:00").to_pydatetime())
    rows[len(rows) // 2]["packs"] = None
    with pytest.raises(Exception, match="(?i)null"):
        write_proposals(engine, schema, D, [1, 2, 3], rows, batch_size=50)
    pd.testing.assert_frame_equal(read_proposals(engine, schema, D), before)

    # a crash between batches (hook) also leaves every old row in place
    def boom(done: int) -> None:
        if done >= 100:
            raise RuntimeError("power cut")

    good = proposal_rows(lines, None, pd.Timestamp("2025-12-01 07:00").to_pydatetime())
    with pytest.raises(RuntimeError, match="power cut"):
        write_proposals(engine, schema, D, [1, 2, 3], good, batch_size=50, hook=boom)
    after = read_proposals(engine, schema, D)
    pd.testing.assert_frame_equal(after, before)
    assert after["planner_qty"].notna().sum() == 1
    engine.dispose()


def test_sqlite_crash_mid_write_keeps_the_previous_proposal(planned, world):
    url, _, _ = planned
    engine, schema = open_source(url)
    before = read_proposals(engine, schema, D)
    rows = before.drop(columns=["planner_qty", "override_reason", "overridden_by", "overridden_at"])
    rows = rows.to_dict("records")
    for r in rows:
        for c in ("proposal_date", "delivery_date", "data_date"):
            r[c] = pd.Timestamp(r[c]).date()
        r["created_at"] = pd.Timestamp(r["created_at"]).to_pydatetime()
    rows[-1]["qty"] = None
    with pytest.raises(Exception, match="(?i)not null"):
        write_proposals(engine, schema, D, [1, 2, 3], rows, batch_size=40)
    pd.testing.assert_frame_equal(read_proposals(engine, schema, D), before)


def test_exceptions_are_found_and_ranked():
    from forecasting.config import ExceptionConfig, ReplenishmentConfig
    from planning.exceptions import find_exceptions

    day = date(2025, 3, 4)
    base = {"store_id": 1, "material_name": None, "unit": "L", "order_date": day, "delivery_date": date(2025, 3, 6),
            "is_order_day": True, "reason_codes": [], "count_flag": "ok", "on_hand_counted": 10.0,
            "count_date": date(2025, 3, 3), "demand_mean": 12.0, "qty_packs": 1}
    lines = pd.DataFrame([
        {**base, "material_id": 1, "material_name": "milk", "on_hand_used": 2.0},  # runs out tomorrow
        {**base, "material_id": 2, "material_name": "beans", "on_hand_used": 100.0, "qty_packs": 9},  # usual 2
        {**base, "material_id": 3, "material_name": "cups", "on_hand_used": 50.0, "count_flag": "jump_up"},
        {**base, "material_id": 4, "material_name": "new syrup", "on_hand_used": 50.0},
        {**base, "material_id": 5, "material_name": "box", "on_hand_used": 50.0, "reason_codes": ["case_cover"]},
    ])
    fc = pd.DataFrame({"store_id": 1, "product_id": 1, "date": [day, day + pd.Timedelta(days=1)], "mean": 3.0,
                       "segment": "fast"})
    bom = pd.DataFrame({"product_id": [1] * 5, "material_id": [1, 2, 3, 4, 5], "qty_per_unit": 1.0})
    materials = pd.DataFrame({"material_id": [1, 2, 3, 4, 5], "pack_size": 1.0})
    old = [day - pd.Timedelta(days=k) for k in range(1, 31)]
    inv = pd.DataFrame([(1, m, d, 5.0) for m in (1, 2, 3, 5) for d in old],
                       columns=["store_id", "material_id", "snapshot_date", "on_hand_qty"])
    orders = pd.DataFrame({"store_id": 1, "material_id": 2, "ordered_on": [day - pd.Timedelta(days=7 * k)
                                                                          for k in range(1, 5)],
                           "qty": 2.0, "expected_delivery": day, "received_on": day, "received_qty": 2.0,
                           "status": "received"})
    exc = find_exceptions(lines, fc, bom, materials, inv, orders, day, ExceptionConfig(), ReplenishmentConfig())
    kinds = {(e.material_id, e.kind) for e in exc}
    assert {(1, "stockout"), (2, "high_order"), (3, "implausible_count"), (4, "new_item"), (5, "review")} <= kinds
    assert exc[0].kind == "stockout" and "running out around" in exc[0].message
