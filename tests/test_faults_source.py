"""Fault injection on the source database: a real ``bentoml serve`` reads a scratch MariaDB through a TCP proxy.

The proxy (``tests/faultproxy.py``) delays, blackholes (accepts and never answers) and refuses the connection;
then the service's own database user is revoked. Under each fault, requests that need the source's counts get a
503 that says so within ``inventory_ttl_s`` + a few seconds (never counts the source can no longer confirm),
requests that carry their inventory keep getting 200, ``/status`` tells, and the service recovers by itself when
the fault ends. Every wait is bounded; the recovery times are asserted.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from faultproxy import FaultProxy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from test_serving_support import copy_source_to_mysql, start_server, wait_for, world

pytestmark = pytest.mark.mysql

TTL_S, QUERY_TIMEOUT_S, RECYCLE_S = 1, 2, 10
DETECT_S = TTL_S + QUERY_TIMEOUT_S + 2 + 3  # the service's bound (check period + one read + 2 s) + test slack
RECOVER_S = 15


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mysql_server):
    w = world(tmp_path_factory)
    name, user = f"scratch_faults_{uuid.uuid4().hex[:8]}", f"svc_{uuid.uuid4().hex[:8]}"
    admin = create_engine(mysql_server)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        conn.execute(text(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'"))
        conn.execute(text(f"GRANT SELECT ON `{name}`.* TO '{user}'@'127.0.0.1'"))
    copy_source_to_mysql(f"sqlite:///{w['root']}/source.db", f"{mysql_server}/{name}")
    admin_url = make_url(mysql_server)
    proxy = FaultProxy(admin_url.host or "127.0.0.1", admin_url.port or 3306)
    url = f"mysql+pymysql://{user}:pw@127.0.0.1:{proxy.port}/{name}"
    srv = start_server(w["config"], tmp_path_factory.mktemp("faults-source"), REPLENISH_DB_URL=url,
                       REPLENISH__SERVING__INVENTORY_TTL_S=str(TTL_S),
                       REPLENISH__SERVING__SOURCE_TIMEOUT_S="1",
                       REPLENISH__SERVING__SOURCE_QUERY_TIMEOUT_S=str(QUERY_TIMEOUT_S),
                       REPLENISH__SERVING__SOURCE_RECYCLE_S=str(RECYCLE_S))
    yield {"server": srv, "proxy": proxy, "admin": admin, "user": user}
    srv.stop()
    proxy.close()
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'"))
    admin.dispose()


def _post(srv, body: dict) -> httpx.Response:
    return httpx.post(f"{srv.url}/replenishment", json=body, timeout=30)


def _bodies(srv) -> tuple[dict, dict]:
    day = srv.status()["order_dates"][0]
    return ({"store_id": 2, "order_date": day},
            {"store_id": 2, "order_date": day, "inventory": [{"material_id": 1, "on_hand": 20.0}]})


def _outage(srv, plain: dict, with_inv: dict) -> float:
    """Seconds from now until a request needing the counts gets a 503; checks what the outage looks like."""
    t0 = time.monotonic()
    r = wait_for(lambda: (r := _post(srv, plain)).status_code != 200 and r, timeout_s=DETECT_S + 10, every=0.2)
    detected = time.monotonic() - t0
    assert r.status_code == 503, r.text
    msg = r.json()["error"]
    assert "unreachable" in msg and "send `inventory`" in msg and "@" not in msg and "pw" not in msg, msg
    ok = _post(srv, with_inv)
    assert ok.status_code == 200 and ok.json()["inventory_source"] == "request"
    status = wait_for(lambda: (s := srv.status())["source_ok"] is False and s, timeout_s=QUERY_TIMEOUT_S + 5)
    assert status["counts_error"] and status["ready"] is True
    return detected


def _recovery(srv, plain: dict) -> float:
    t0 = time.monotonic()
    r = wait_for(lambda: (r := _post(srv, plain)).status_code == 200 and r, timeout_s=RECOVER_S + 10, every=0.2)
    took = time.monotonic() - t0
    assert r.json()["inventory_source"] == "source"
    s = srv.status()
    assert s["source_ok"] is True and s["counts_error"] is None, s
    return took


def test_a_slow_source_still_answers(setup):
    srv, proxy = setup["server"], setup["proxy"]
    plain, _ = _bodies(srv)
    assert _post(srv, plain).status_code == 200
    proxy.delay_s = 0.1
    proxy.set("delay")
    try:
        time.sleep(3 * TTL_S + 2)  # several checks through the slow link
        codes = {_post(srv, plain).status_code for _ in range(5)}
        assert codes == {200}
        assert srv.status()["source_ok"] is True
    finally:
        proxy.set("pass")


@pytest.mark.parametrize("fault", ["blackhole", "refuse"])
def test_a_hanging_or_refusing_source_gives_503_in_bounded_time_and_recovers(setup, fault):
    srv, proxy = setup["server"], setup["proxy"]
    plain, with_inv = _bodies(srv)
    wait_for(lambda: _post(srv, plain).status_code == 200, timeout_s=RECOVER_S)
    proxy.set(fault)
    try:
        detected = _outage(srv, plain, with_inv)
        assert detected <= DETECT_S, f"{fault}: 503 only after {detected:.1f} s"
        time.sleep(2)  # stays down while the fault lasts: no request answered from unconfirmed counts
        assert _post(srv, plain).status_code == 503
    finally:
        proxy.set("pass")
    took = _recovery(srv, plain)
    assert took <= RECOVER_S, f"{fault}: recovered only after {took:.1f} s"
    print(f"{fault}: 503 after {detected:.1f} s, recovered {took:.1f} s after the fault ended")  # report figures
    assert "Traceback" not in srv.log_text()


def test_a_revoked_user_is_cut_off_within_the_recycle_time(setup):
    srv, admin = setup["server"], setup["admin"]
    plain, with_inv = _bodies(srv)
    wait_for(lambda: _post(srv, plain).status_code == 200, timeout_s=RECOVER_S)
    with admin.begin() as conn:
        conn.execute(text(f"DROP USER '{setup['user']}'@'127.0.0.1'"))
    detected = _outage(srv, plain, with_inv)
    assert detected <= RECYCLE_S + DETECT_S, f"revoked user still reading after {detected:.1f} s"
    print(f"revoked user: 503 after {detected:.1f} s (pool recycle {RECYCLE_S} s)")
