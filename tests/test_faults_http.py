"""Hostile requests and an open bind, against a real ``bentoml serve`` on loopback (shared small world, with a token).

A body that fails validation gets a 400 in the API's words (no internal class names) and one log line without a
traceback; request text that reaches the log (a JSON key with a newline, control bytes, a ``%0A`` path) cannot forge
a line; a 401 says nothing about the model; and the service refuses to start on a non-loopback address without a
token (what a built Bento would otherwise do: BentoML binds 0.0.0.0 by default).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from test_serving_support import BENTOML, ROOT, free_port, start_server, world

from serving.http import open_without_token

TOKEN = "t0k3n-faults"
FORGED = "2026-12-07T00:00:00+0000 [INFO] [entry_service:replenishment:1] admin login ok"
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    w = world(tmp_path_factory)
    srv = start_server(w["config"], tmp_path_factory.mktemp("faults-http"), token=TOKEN)
    yield srv
    srv.stop()


def _post(srv, raw: bytes, path: str = "/replenishment", **headers) -> httpx.Response:
    return httpx.post(srv.url + path, content=raw, timeout=30,
                      headers={**srv.headers, "content-type": "application/json", **headers})


def _wait_log(srv, needle: str, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while needle not in (text := srv.log_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return text


def test_validation_failures_are_one_line_and_in_the_apis_words(server):
    status = server.post("/status", {}).json()
    day = status["order_dates"][0]
    cases = [
        (b"[]", "body: Input should be an object"),
        (b'{"store_id": 1,', "Invalid JSON"),
        (json.dumps({"store_id": "one", "order_date": day}).encode(), "store_id"),
        (json.dumps({"store_id": 1, "order_date": day, "inventory": [{"material_id": 1, "on_hand": -1}]}).encode(),
         "inventory.0.on_hand: Input should be greater than or equal to 0"),
    ]
    before = server.log_text().count("400 on /replenishment")
    for raw, words in cases:
        r = _post(server, raw)
        assert r.status_code == 400, r.text
        body = r.json()
        assert words in body["error"], body
        assert "ReplenishmentRequest" not in r.text and "InventoryItem" not in r.text
        assert body["model_version"] == status["model_version"] and body["detail"]
    text = _wait_log(server, "on_hand: Input should be greater")
    assert text.count("400 on /replenishment") - before == len(cases)
    assert "Traceback" not in text and "validation error for" not in text


def test_request_text_cannot_forge_log_lines_or_carry_control_bytes(server):
    day = server.post("/status", {}).json()["order_dates"][0]
    key = f"x\n{FORGED}\r\x1b[31m\x00"
    r = _post(server, json.dumps({"store_id": 1, "order_date": day, key: 1}).encode())
    assert r.status_code == 400 and "Extra inputs" in r.text
    httpx.get(server.url + "/%0A" + FORGED.replace(" ", "%20"), headers=server.headers, timeout=10)
    text = _wait_log(server, "admin login ok")
    assert "admin login ok" in text  # logged, but escaped inside one line
    for line in text.splitlines():
        assert not line.startswith(FORGED[:20]), line
        assert LINE.match(line) or line.startswith(("  ", "\t")) or not line.strip(), line
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), "raw control bytes in the log"


def test_unauthorised_answers_say_nothing_about_the_model(server):
    for path in ("/replenishment", "/status", "/metrics", "/docs.json"):
        r = httpx.post(server.url + path, json={}, timeout=10) if path != "/metrics" else httpx.get(
            server.url + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
        assert "x-model-version" not in r.headers and "model" not in r.text.lower(), (path, r.headers, r.text)


def test_the_service_refuses_to_serve_the_network_without_a_token():
    # The check runs when `bentoml serve` imports the service, before any model or database is touched.
    env = {k: v for k, v in os.environ.items() if k not in ("REPLENISH_API_TOKEN", "BENTOML_HOST")}
    env["PYTHONPATH"] = str(ROOT)
    for extra in (["--host", "0.0.0.0"], []):  # explicit, and BentoML's default bind
        t0 = time.monotonic()
        out = subprocess.run([BENTOML, "serve", "serving.service:Replenishment", "--port", str(free_port()),
                              *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "refusing to serve on 0.0.0.0 without an API token" in out.stderr
        assert "Traceback" not in out.stderr and time.monotonic() - t0 < 120
    assert open_without_token("127.0.0.1", None) is None and open_without_token("::1", None) is None
    assert open_without_token("0.0.0.0", "secret") is None and open_without_token("10.1.2.3", None)


def test_the_bento_binds_loopback_by_default():
    spec = yaml.safe_load(Path(ROOT / "bentofile.yaml").read_text())
    envs = {e["name"]: e.get("value") for e in spec.get("envs", [])}
    assert envs.get("BENTOML_HOST") == "127.0.0.1"
    assert "0.0.0.0" not in envs.values()
