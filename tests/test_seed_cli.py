"""``replenish seed`` / ``replenish stats``: refusal, --replace, atomicity, scenario errors, JSON, MariaDB."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from forecasting.errors import ConfigError
from forecasting.source.db import open_source
from generator import generate, load_scenario
from generator.stats import STAT_KEYS, content_hash
from replenish.cli import main

SMALL = "configs/scenarios/small.yaml"


def run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _meta(url: str) -> dict[str, str]:
    engine, _ = open_source(url)
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT `key`, value FROM t_source_meta")).all())


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'seeded.db'}"
    assert run(["seed", "--db", url, "--scenario", SMALL, "--quiet"]) == 0
    return url


def test_refuses_existing_history_without_replace(seeded, capsys):
    capsys.readouterr()
    assert run(["seed", "--db", seeded, "--scenario", SMALL, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--replace" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1


def test_replace_swaps_the_history_and_interrupted_seed_keeps_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert run(["seed", "--db", url, "--scenario", SMALL, "--seed", "1", "--quiet"]) == 0
    assert run(["seed", "--db", url, "--scenario", SMALL, "--seed", "2", "--replace", "--quiet"]) == 0
    assert _meta(url)["seed"] == "2"
    engine, schema = open_source(url)
    before = content_hash(engine, schema)

    def boom(table: str) -> None:
        if table == "orders":
            raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        generate(engine, schema, SMALL, 3, replace=True, hook=boom)
    assert content_hash(engine, schema) == before  # the old history, untouched, not mixed with the new one
    assert _meta(url)["seed"] == "2"


def test_interrupted_first_seed_leaves_no_half_history(tmp_path):
    engine, schema = open_source(f"sqlite:///{tmp_path / 'h.db'}")

    def boom(table: str) -> None:
        if table == "order_items":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(engine, schema, SMALL, 42, hook=boom)
    with engine.connect() as conn:
        for t in ("t_source_meta", "t_store", "t_order", "t_user"):
            assert conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("name: x\nevents:\n  - {type: closure, date: not-a-date}\n", "events.0.closure.date"),
        ("name: x\nn_storez: 3\n", "n_storez"),
        ("name: x\nevents:\n  - {type: weather, date: 2025-10-01, kind: rain, demand_factor: -1}\n",
         "events.0.weather.demand_factor"),
    ],
)
def test_malformed_scenario_names_the_field(tmp_path, capsys, body, field):
    bad = tmp_path / "bad.yaml"
    bad.write_text(body)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_scenario(bad)
    capsys.readouterr()
    assert run(["seed", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--scenario", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


def test_stats_json_has_exactly_the_report_keys(seeded, capsys):
    capsys.readouterr()
    assert run(["stats", "--db", seeded, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == STAT_KEYS
    for key, row in out.items():
        assert {"report", "generated"} <= set(row), key
    assert out["top_product_name"]["report"] == "Iced Coconut Latte"
    assert out["stores_open"]["generated"] == 3
    assert run(["stats", "--db", seeded]) == 0
    table = capsys.readouterr().out
    assert "top_product_name" in table and "incumbent_forecast_records" in table


def test_stats_on_empty_database_is_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert run(["db", "init", "--db", url]) == 0
    capsys.readouterr()
    assert run(["stats", "--db", url]) == 2
    assert "replenish seed" in capsys.readouterr().err


@pytest.mark.mysql
def test_seed_and_read_back_on_mariadb(mysql_url, seeded, capsys):
    assert run(["seed", "--db", mysql_url, "--scenario", SMALL, "--quiet"]) == 0
    my, _ = open_source(mysql_url)
    lite, _ = open_source(seeded)
    tables = ["t_order", "t_order_item", "t_user", "t_replenishment_forecast", "t_inventory_snapshot",
              "t_demand_truth", "t_demand_truth_hourly", "t_coupon_redemption", "t_replenishment_order"]
    with my.connect() as a, lite.connect() as b:
        for t in tables:
            assert a.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() == \
                b.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar(), t
        q = "SELECT SUM(pay_amount), MIN(created_at), MAX(created_at) FROM t_order"
        ra, rb = a.execute(text(q)).one(), b.execute(text(q)).one()
        assert float(ra[0]) == pytest.approx(float(rb[0]), abs=0.05)
        assert [str(x)[:19] for x in ra[1:]] == [str(x)[:19] for x in rb[1:]]
    capsys.readouterr()
    assert run(["seed", "--db", mysql_url, "--scenario", SMALL, "--quiet"]) == 2  # refuses on MariaDB too
    assert run(["stats", "--db", mysql_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stores_open"]["generated"] == 3
    my.dispose()
