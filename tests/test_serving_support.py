"""Shared pieces of the serving tests (no tests here): the small world, built once per session, and a real server.

Why a subprocess: the API is tested as it runs in production, ``bentoml serve`` on a loopback port, waiting for
``/readyz`` (which only turns 200 once a model and its forecasts are loaded).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENTOML = str(Path(sys.executable).with_name("bentoml"))
_WORLD: dict = {}


def world(tmp_path_factory) -> dict:
    """The serving world (small scenario, tiny LightGBM champion v1, its forecast cache), once per session."""
    if not _WORLD:
        from serving.devworld import build

        _WORLD.update(build(tmp_path_factory.mktemp("serving-world"), progress=lambda _m: None))
    return _WORLD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def post(self, path: str, body=None, **kw) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=60, **kw)

    def status(self) -> dict:
        r = self.post("/status", {})
        assert r.status_code == 200, r.text
        return r.json()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_server(config: str, log_dir: Path, token: str | None = None, timeout_s: float = 150, **env: str) -> Server:
    """``bentoml serve serving.service:Replenishment`` on a free port with ``config``; waits for /readyz."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    full_env = {**os.environ, "REPLENISH_CONFIG": config, "PYTHONPATH": str(ROOT), **env}
    full_env.pop("REPLENISH_API_TOKEN", None)
    if token:
        full_env["REPLENISH_API_TOKEN"] = token
    proc = subprocess.Popen([BENTOML, "serve", "serving.service:Replenishment", "--host", "127.0.0.1", "--port",
                             str(port)], cwd=ROOT, env=full_env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", proc, log, token)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server did not get ready:\n{server.log_text()[-3000:]}")
        time.sleep(0.3)


def wait_for(predicate, timeout_s: float = 30, every: float = 0.3):
    """Poll ``predicate`` until it returns a truthy value (returned) or the time is up (AssertionError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(every)


def copy_source_to_mysql(sqlite_url: str, mysql_url: str) -> None:
    """The tables the API reads, copied from the world's SQLite source into a (scratch) MariaDB database."""
    from sqlalchemy import select

    from forecasting.source.db import init_db, make_engine
    from forecasting.source.schema import build_schema

    schema = build_schema()
    src, dst = make_engine(sqlite_url, schema), make_engine(mysql_url, schema)
    init_db(dst, schema)
    with src.connect() as a, dst.begin() as b:
        for name in ("stores", "products", "suppliers", "materials", "bom", "inventory_snapshots",
                     "replenishment_orders"):
            t = schema[name]
            rows = [dict(r._mapping) for r in a.execute(select(t))]
            if rows:
                b.execute(t.insert(), rows)
    src.dispose()
    dst.dispose()


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
