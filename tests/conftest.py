"""Shared fixtures: real databases only. MariaDB tests skip (saying why) only when no server answers."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

MYSQL_ADMIN_URL = os.environ.get("REPLENISH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")


def _mysql_reachable() -> str | None:
    """None when the server answers, else the reason it does not."""
    try:
        eng = create_engine(MYSQL_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def mysql_server() -> str:
    reason = _mysql_reachable()
    if reason is not None:
        pytest.skip(f"MariaDB at {MYSQL_ADMIN_URL} unreachable: {reason}")
    return MYSQL_ADMIN_URL


@pytest.fixture
def mysql_url(mysql_server):
    """A scratch database, created for one test and dropped after it."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    admin = create_engine(mysql_server)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield f"{mysql_server}/{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'source.db'}"
