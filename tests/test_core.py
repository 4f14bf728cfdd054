"""The shared core: configuration, schema creation on SQLite and MariaDB, clear connection failures."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import inspect

from forecasting.config import load_settings
from forecasting.errors import ConfigError, SourceUnavailable
from forecasting.source.db import init_db, open_source
from forecasting.source.schema import DEFAULT_TABLES, build_schema


def test_env_overrides_url_and_nested_keys(tmp_path):
    s = load_settings(environ={"REPLENISH_DB_URL": "sqlite:///x.db", "REPLENISH__FEATURES__OUT_DIR": "elsewhere"})
    assert s.source.url == "sqlite:///x.db"
    assert s.features.out_dir == "elsewhere"


def test_unknown_config_key_names_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source:\n  urll: sqlite:///x.db\n")
    with pytest.raises(ConfigError, match="source.urll"):
        load_settings(bad, environ={})


def test_init_creates_every_table_sqlite(sqlite_url):
    engine, schema = open_source(sqlite_url)
    created = init_db(engine, schema)
    assert set(created) == set(DEFAULT_TABLES)
    assert init_db(engine, schema) == []  # idempotent


@pytest.mark.mysql
def test_init_schema_qualified_on_mariadb(mysql_url):
    db = mysql_url.rsplit("/", 1)[1]
    mapping = {"inventory_snapshots": f"{db}_irepl.t_inventory_snapshot"}
    engine, schema = open_source(mysql_url, mapping)
    try:
        created = init_db(engine, schema)
        assert "inventory_snapshots" in created
        assert inspect(engine).has_table("t_inventory_snapshot", schema=f"{db}_irepl")
        assert not inspect(engine).has_table("t_inventory_snapshot")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{db}_irepl`")


def test_schema_mapping_renames_physical_tables():
    schema = build_schema({"orders": "sales.t_order_2"})
    assert schema["orders"].name == "t_order_2" and schema["orders"].schema == "sales"


def test_unreachable_db_is_one_line_exit_2_fast():
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "replenish.cli", "db", "init", "--db", "mysql://root:hunter2@127.0.0.1:1/x"],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert time.monotonic() - start < 10
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "cannot reach source database" in lines[0]
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr


def test_bad_url_is_clear():
    with pytest.raises(SourceUnavailable, match="not a database URL"):
        open_source("no-such-thing")
