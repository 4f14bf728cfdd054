"""The API over a real ``bentoml serve`` on a loopback port, with an API token, on the small world."""

from __future__ import annotations

import json
from datetime import date, timedelta

import httpx
import pytest
from test_serving_support import api_server, world


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = api_server(tmp_path_factory)
    yield srv
    log = srv.log_text()
    assert "Traceback" not in log or "ValidationError" in log, log[-3000:]


@pytest.fixture(scope="module")
def status(server) -> dict:
    return server.status()


def _order_day(status: dict) -> str:
    return status["order_dates"][0]


def test_health_checks_are_open_everything_else_needs_the_token(server):
    for path in ("/healthz", "/readyz", "/livez"):
        assert httpx.get(server.url + path).status_code == 200
    r = httpx.post(server.url + "/status", json={})
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert httpx.post(server.url + "/status", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(server.url + "/metrics").status_code == 401
    metrics = httpx.get(server.url + "/metrics", headers=server.headers)
    assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text
    assert httpx.get(server.url + "/docs.json").status_code == 401


def test_status_names_the_model_and_what_it_can_answer(status):
    assert status["ready"] and status["model_version"].startswith("v") and status["model_source"] == "mlflow"
    assert status["stores"] == [1, 2, 3]
    first, last = (date.fromisoformat(d) for d in status["order_dates"])
    assert first == date.fromisoformat(status["data_date"]) + timedelta(days=1) and last > first
    assert status["hourly_available"] and status["source_ok"] in (True, None)
    assert status["counts_read_at"] and status["counts_error"] is None  # latest counts in memory from the start


def test_replenishment_from_the_request_inventory(server, status):
    day = _order_day(status)
    inv = [{"material_id": 1, "on_hand": 1500.0, "on_order": 500.0}, {"material_id": 2, "on_hand": 0}]
    r = server.post("/replenishment", {"store_id": 1, "order_date": day, "inventory": inv})
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-model-version"] == body["model_version"] == status["model_version"]
    assert body["inventory_source"] == "request" and body["data_date"] == status["data_date"]
    lines = {ln["material_id"]: ln for ln in body["lines"]}
    assert len(lines) > 50
    beans = lines[1]
    assert beans["on_hand_used"] == 1500.0 and beans["on_order"] == 500.0 and beans["count_flag"] == "ok"
    assert beans["inventory_position"] == 2000.0
    for ln in body["lines"]:
        assert ln["qty_units"] == pytest.approx(ln["qty_packs"] * ln["pack_size"])
        assert ln["delivery_date"] >= day and ln["explanation"] and ln["model_version"] == body["model_version"]
    missing = [ln for m, ln in lines.items() if m not in (1, 2)]
    assert all(ln["count_flag"] == "missing" and ln["on_hand_used"] == 0 for ln in missing)


def test_replenishment_from_source_counts_equals_the_planners_proposal(server, status, tmp_path_factory):
    """Without inventory the API gives exactly what ``propose`` gives for that store (same samples, same counts)."""
    from forecasting.config import load_settings
    from forecasting.inventory.proposal import propose
    from forecasting.source.forecast_cache import read_cache
    from serving.source import SourceReader

    w = world(tmp_path_factory)
    s = load_settings(w["config"], environ={})
    day = date.fromisoformat(_order_day(status)) + timedelta(days=1)
    r = server.post("/replenishment", {"store_id": 2, "order_date": day.isoformat()})
    assert r.status_code == 200, r.text
    got = {ln["material_id"]: ln for ln in r.json()["lines"]}
    assert r.json()["inventory_source"] == "source"

    cache = read_cache(s.planning.forecasts_dir, status["model_version"], date.fromisoformat(status["data_date"]))
    reader = SourceReader(s.source.url, s.source.tables)
    master = reader.master()
    counts, orders = reader.store_inventory(2, day - timedelta(days=1), s.replenishment.counts.lookback_days)
    fc = cache.frame[cache.frame["store_id"] == 2]
    want = propose(fc, master.materials, master.bom, master.suppliers, counts, day, s.replenishment,
                   cache.model_version, cache.data_date, orders=orders)
    assert len(want) == len(got)
    for ln in want:
        g = got[ln.material_id]
        assert (g["qty_packs"], g["count_flag"]) == (ln.qty_packs, ln.count_flag)
        assert g["demand_quantile"] == pytest.approx(ln.demand_quantile)
        assert g["explanation"] == ln.explanation


def test_service_level_changes_service_level_lines_only(server, status):
    day = _order_day(status)
    inv = [{"material_id": 1, "on_hand": 0}]
    lo = server.post("/replenishment", {"store_id": 1, "order_date": day, "inventory": inv, "service_level": 0.5})
    hi = server.post("/replenishment", {"store_id": 1, "order_date": day, "inventory": inv, "service_level": 0.999})
    assert lo.status_code == hi.status_code == 200
    for a, b in zip(lo.json()["lines"], hi.json()["lines"], strict=True):
        if a["quantile_basis"] == "service_level":
            assert (a["quantile_level"], b["quantile_level"]) == (0.5, 0.999)
            assert a["demand_quantile"] == a["demand_median"] <= b["demand_quantile"]
        else:
            assert a["quantile_level"] == b["quantile_level"] and a["demand_quantile"] == b["demand_quantile"]


def test_batch_covers_the_listed_or_all_stores(server, status):
    day = _order_day(status)
    r = server.post("/replenishment/batch", {"order_date": day, "store_ids": [3, 1]})
    assert r.status_code == 200, r.text
    assert [s["store_id"] for s in r.json()["stores"]] == [1, 3]
    every = server.post("/replenishment/batch", {"order_date": day})
    assert [s["store_id"] for s in every.json()["stores"]] == status["stores"]
    assert every.json()["model_version"] == status["model_version"]


def test_forecast_quantiles_and_hourly_profile(server, status, tmp_path_factory):
    start = status["forecast_dates"][0]
    r = server.post("/forecast", {"store_id": 1, "product_ids": [1, 2], "start_date": start, "days": 3,
                                  "quantiles": [0.9, 0.5], "hourly": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["quantiles"] == [0.5, 0.9] and [p["product_id"] for p in body["products"]] == [1, 2]
    from serving.devworld import cached_frame

    w = world(tmp_path_factory)
    fc = cached_frame(w["root"], status["model_version"], date.fromisoformat(status["data_date"]))
    for p in body["products"]:
        assert len(p["days"]) == 3
        for d in p["days"]:
            row = fc[(fc["store_id"] == 1) & (fc["product_id"] == p["product_id"])
                     & (fc["date"] == date.fromisoformat(d["date"]))]
            assert d["mean"] == pytest.approx(float(row["mean"].iloc[0]))
            assert d["quantiles"]["0.5"] <= d["quantiles"]["0.9"]
            assert sum(h["share"] for h in d["hourly"]) == pytest.approx(1.0)
            assert sum(h["mean"] for h in d["hourly"]) == pytest.approx(d["mean"])
            assert all(0 <= h["hour"] < 24 for h in d["hourly"])
            # hour-level uncertainty: whole units, ordered, and the hours' medians never above the day's 0.9 quantile
            for h in d["hourly"]:
                assert set(h["quantiles"]) == {"0.5", "0.9"} and h["quantiles"]["0.5"] <= h["quantiles"]["0.9"]
                assert float(h["quantiles"]["0.9"]).is_integer()
            assert sum(h["quantiles"]["0.5"] for h in d["hourly"]) <= d["quantiles"]["0.9"]


BAD = [
    ("/replenishment", {"store_id": 99, "order_date": "{day}"}, 404, "unknown store_id 99"),
    ("/replenishment", {"store_id": 1, "order_date": "2020-01-01"}, 400, "outside what model"),
    ("/replenishment", {"store_id": 1, "order_date": "{day}", "inventory": [{"material_id": 987654, "on_hand": 1}]},
     404, "unknown material_id 987654"),
    ("/replenishment", {"store_id": 1, "order_date": "{day}", "inventory": [{"material_id": 1, "on_hand": -3}]},
     400, "greater than or equal to 0"),
    ("/replenishment", {"store_id": 1, "order_date": "{day}", "inventory": [{"material_id": 1, "on_hand": "ten"}]},
     400, "valid number"),
    ("/replenishment", {"store_id": 1, "order_date": "{day}", "inventory": [{"material_id": 1, "on_hand": 1},
                                                                            {"material_id": 1, "on_hand": 2}]},
     400, "more than once"),
    ("/replenishment", {"store_id": 1, "order_date": "{day}", "service_level": 0.3}, 400, "greater than or equal"),
    ("/replenishment", {"store_id": 1, "order_date": "not-a-date"}, 400, "date"),
    ("/replenishment", {"store_id": 1, "order_date": "{day}", "surprise": 1}, 400, "Extra inputs"),
    ("/replenishment/batch", {"order_date": "{day}", "store_ids": [1, 42]}, 404, "unknown store_id 42"),
    ("/forecast", {"store_id": 1, "start_date": "{day}", "days": 60}, 400, "outside what model"),
    ("/forecast", {"store_id": 1, "start_date": "{day}", "days": 2, "product_ids": [99999]}, 404, "product_id 99999"),
    ("/forecast", {"store_id": 1, "start_date": "{day}", "days": 0}, 400, "greater than or equal to 1"),
    ("/forecast", {"store_id": 1, "start_date": "{day}", "days": 2, "quantiles": [1.5]}, 400, "less than 1"),
]


@pytest.mark.parametrize(("path", "body", "code", "text"), BAD, ids=[b[3] for b in BAD])
def test_bad_input_gets_a_4xx_that_says_what_is_wrong(server, status, path, body, code, text):
    raw = json.dumps(body).replace("{day}", _order_day(status))
    r = httpx.post(server.url + path, content=raw, headers={**server.headers, "content-type": "application/json"})
    assert r.status_code == code, r.text
    assert text in json.dumps(r.json()), r.text
    assert "error" in r.json()


def test_malformed_oversized_and_non_json_bodies(server):
    h = {**server.headers, "content-type": "application/json"}
    r = httpx.post(server.url + "/replenishment", content=b'{"store_id": 1,', headers=h)
    assert r.status_code == 400 and "Invalid JSON" in r.text
    assert httpx.post(server.url + "/replenishment", content=b"[]", headers=h).status_code == 400
    big = b'{"store_id": 1, "pad": "' + b"x" * 400_000 + b'"}'
    r = httpx.post(server.url + "/replenishment", content=big, headers=h)
    assert r.status_code == 413 and "larger than" in r.json()["error"]

    def chunks():
        for _ in range(40):
            yield b" " * 10_000

    assert httpx.post(server.url + "/replenishment", content=chunks(), headers=h).status_code == 413
    r = httpx.post(server.url + "/replenishment", content=b"store_id=1", headers={
        **server.headers, "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_openapi_documents_the_errors_and_the_bearer_scheme(server):
    spec = httpx.get(server.url + "/docs.json", headers=server.headers).json()
    for path in ("/replenishment", "/replenishment/batch", "/forecast", "/status"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "404", "413", "415", "503"} <= set(responses)
        assert spec["paths"][path]["post"]["security"] == [{"bearer": []}]
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    req = spec["paths"]["/replenishment"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert req


def test_schemathesis_finds_no_server_error_and_no_schema_violation(server):
    """Bounded property-based run over the published OpenAPI: valid and invalid inputs for every operation."""
    import hypothesis
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json", headers=server.headers)
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() != "POST":
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(max_examples=25, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(hypothesis.HealthCheck),
                                 phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                nonlocal ran
                case.call_and_validate(base_url=server.url, headers=server.headers, checks=checks, timeout=60)
                ran += 1

            run()
    assert ran >= 100
