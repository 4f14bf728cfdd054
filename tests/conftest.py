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


PG_ADMIN_URL = os.environ.get("REPLENISH_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on a free loopback port, PostgreSQL backend store, artifacts in a temp folder."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {str(exc).splitlines()[0]}")
    name = f"mlflow_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    backend = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = _free_port()
    mlflow_bin = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    log = open(artifacts.parent / f"mlflow-server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
        # no job runner (huey consumers): the tests use tracking and the registry only, and it halves the start
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
