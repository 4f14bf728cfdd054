"""Configuration text never becomes SQL: a crafted schema name in ``source.tables`` stays one quoted identifier."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text

from forecasting.source.db import ensure_schemas
from forecasting.source.schema import build_schema


@pytest.mark.mysql
def test_a_crafted_schema_name_cannot_change_the_database_it_creates(mysql_server):
    base = f"scratch_evil_{uuid.uuid4().hex[:8]}"
    crafted = f"{base}` CHARACTER SET latin1 -- x"  # unquoted, this made `base` a latin1 database
    engine = create_engine(mysql_server)
    try:
        ensure_schemas(engine, build_schema({"stores": f"{crafted}.t_store"}))
        with engine.connect() as conn:
            rows = dict(conn.execute(text(
                "SELECT schema_name, default_character_set_name FROM information_schema.schemata "
                "WHERE schema_name LIKE :p"), {"p": f"{base}%"}).all())
        assert rows == {crafted: "utf8mb4"}
    finally:
        with engine.begin() as conn:
            for name in (base, crafted):
                conn.execute(text(f"DROP DATABASE IF EXISTS {engine.dialect.identifier_preparer.quote(name)}"))
        engine.dispose()
