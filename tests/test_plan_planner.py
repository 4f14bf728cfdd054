"""What the planner reads: final quantities beside the engine's in the CSV and report after a re-plan, a partial
re-plan keeping the day's index whole, stale counts as one banner with flagged lines (exit 1 unless --allow-stale),
whole pieces and plain words in the main view with the statistics in the details."""

from __future__ import annotations

import csv
import json
import re
import shutil
from datetime import date

import pytest
from test_plan_world import SmallWorld, run_cli, small_world

from forecasting.source.db import open_source
from planning import lifecycle

D = date(2025, 12, 1)


@pytest.fixture(scope="module")
def world() -> SmallWorld:
    return small_world()


@pytest.fixture
def url(world, tmp_path) -> str:
    shutil.copy(world.root / "source.db", tmp_path / "source.db")
    return f"sqlite:///{tmp_path / 'source.db'}"


def _plan(world, url, out, day=D, *extra) -> tuple[int, dict, str]:
    code, o, err = run_cli("plan", "--date", day.isoformat(), "--db", url, "--config", str(world.config), "--out",
                           str(out), "--json", *extra)
    return code, (json.loads(o) if o.strip() else {}), err


def _main_view(html: str) -> str:
    """The page without its <details> blocks (the statistics) and tags."""
    html = re.sub(r"<details.*?</details>", " ", html, flags=re.S)
    html = re.sub(r"<style.*?</style>|<img[^>]*>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_final_quantity_in_csv_and_report_and_the_index_stays_whole(world, url, tmp_path):
    code, summary, err = _plan(world, url, tmp_path / "r1")
    assert code == 0, err
    engine, schema = open_source(url)
    rows = [r for r in csv.DictReader((tmp_path / "r1" / str(D) / "store_1.csv").open()) if r["is_order_day"] == "True"]
    mid, engine_packs = int(rows[0]["material_id"]), int(rows[0]["packs"])
    lifecycle.override(engine, schema, D, 1, mid, engine_packs + 3, "street fair", "ana")
    code, summary, err = _plan(world, url, tmp_path / "r2", D, "--store", "1")  # a partial re-plan
    assert code == 0, err
    out = tmp_path / "r2" / str(D)
    row = next(r for r in csv.DictReader((out / "store_1.csv").open()) if int(r["material_id"]) == mid)
    assert (int(row["packs"]), int(row["final_packs"]), row["planner_qty"], row["override_reason"]) == \
        (engine_packs, engine_packs + 3, str(engine_packs + 3), "street fair")
    page = (out / "store_1.html").read_text()
    assert "planner&#x27;s number: street fair" in page or "planner's number: street fair" in page
    index = (out / "index.html").read_text()
    assert all(f"store_{s}.html" in index for s in (1, 2, 3))  # stores 2 and 3 come from the proposal table
    assert summary["stores"]["1"]["final_packs"] == summary["stores"]["1"]["packs"] + 3
    engine.dispose()


def test_main_view_has_whole_pieces_units_and_plain_words(world, url, tmp_path):
    code, _, err = _plan(world, url, tmp_path)
    assert code == 0, err
    page = (tmp_path / str(D) / "store_2.html").read_text()
    view = _main_view(page)
    assert not re.search(r"\d+\.\d+ pc\b", view), re.findall(r".{40}\d+\.\d+ pc\b", view)[:3]
    assert "covers " in view and "% of likely demand" in view
    assert not re.search(r"\bq\d+|newsvendor|service level 1\b", view)
    assert "quantile" in page  # ... the statistics are kept in the details
    for on_hand, gone in re.findall(r"of the (\d[\d.,]*) on hand, (\d[\d.,]*) expires", page):
        assert float(gone.replace(",", "")) <= float(on_hand.replace(",", ""))


def test_stale_counts_one_banner_flagged_lines_and_exit_1_unless_allowed(world, url, tmp_path):
    late = date(2025, 12, 5)  # the small history's counts end on 11-30: four days old
    code, summary, err = _plan(world, url, tmp_path / "a", late)
    assert code == 1 and "stale counts" in err and "--allow-stale" in err
    assert all(s["stale"] and s["count_age_days"] == 4 for s in summary["stores"].values())
    page = (tmp_path / "a" / str(late) / "store_1.html").read_text()
    assert page.count("Counts are 4 days old") == 1 and "old count" not in _main_view(page)
    with (tmp_path / "a" / str(late) / "store_1.csv").open() as fh:
        assert {r["count_flag"] for r in csv.DictReader(fh)} == {"stale"}
    code, _, err = _plan(world, url, tmp_path / "b", late, "--allow-stale")
    assert code == 0, err
    code, summary, _ = _plan(world, url, tmp_path / "c")  # fresh counts: no banner
    assert code == 0 and not any(s["stale"] for s in summary["stores"].values())
    assert "days old" not in (tmp_path / "c" / str(D) / "store_1.html").read_text()


def test_expiring_stock_sentence_never_exceeds_the_on_hand():
    """Milk counted at 60,000 ml, all of it expiring before the delivery: the sentence names at most the on hand and
    the part that still counts (the median sales until then), which is below it."""
    from datetime import timedelta

    import pandas as pd
    from test_policy_proposal import MILK, TUE, by_key, run
    from test_policy_proposal import world as policy_world

    w = policy_world()
    mon = TUE - timedelta(days=1)
    inv = w["inventory"]
    at = (inv["store_id"] == 1) & (inv["material_id"] == MILK) & (inv["snapshot_date"] == mon)
    w["inventory"] = inv.assign(on_hand_qty=inv["on_hand_qty"].where(~at, 60000.0))
    w["orders"] = pd.DataFrame(w["orders"].to_dict("records") + [dict(
        order_no=3, store_id=1, material_id=MILK, ordered_on=mon - timedelta(days=1), qty=42000.0,
        expected_delivery=mon, received_on=mon, received_qty=42000.0, status="received")])
    milk = by_key(run(w))[(1, MILK)]
    got = re.search(r"of the (\d[\d.]*) on hand, (\d[\d.]*) expires before the delivery: it counts only up to the "
                    r"median sales until then \((\d[\d.]*) in the position\)", milk.explanation)
    assert got, milk.explanation
    on_hand, gone, counted = (float(x) for x in got.groups())
    assert on_hand == 60000.0 and 0 < gone <= on_hand and counted < on_hand
    assert counted == pytest.approx(milk.on_hand_used, rel=1e-3)
