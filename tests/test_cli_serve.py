"""`replenish serve` as an integrating engineer meets it: the OpenAPI document (version, description, bearer scheme,
every field described with an example) and `GET /status`, over a real `bentoml serve` on a loopback port."""

from __future__ import annotations

import httpx
import pytest
from test_serving_support import api_server

from forecasting.version import package_version


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    return api_server(tmp_path_factory)


@pytest.fixture(scope="module")
def spec(server) -> dict:
    r = httpx.get(server.url + "/docs.json", headers=server.headers)
    assert r.status_code == 200
    return r.json()


def test_get_status_works_and_needs_the_token(server):
    assert httpx.get(server.url + "/status").status_code == 401
    r = httpx.get(server.url + "/status", headers=server.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    post = server.status()
    assert body["ready"] is True and {k: body[k] for k in ("model_version", "data_date", "order_dates", "stores")} \
        == {k: post[k] for k in ("model_version", "data_date", "order_dates", "stores")}
    assert r.headers["x-model-version"] == body["model_version"]


def test_openapi_names_this_package_and_describes_the_api(spec):
    info = spec["info"]
    assert info["version"] == package_version() != "None"
    assert "Luckin" in info["title"] and "/replenishment" in info["description"]
    assert "BentoML" not in info["description"]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    status = spec["paths"]["/status"]
    assert "get" in status and "requestBody" not in status["get"] and status["get"]["security"] == [{"bearer": []}]


def test_every_request_and_response_field_has_a_description_and_an_example(spec):
    schemas = spec["components"]["schemas"]
    ours = ["ReplenishmentRequest", "ReplenishmentResponse", "BatchRequest", "BatchResponse", "ForecastRequest",
            "ForecastResponse", "StatusResponse", "InventoryItem", "ProposalLine", "DayForecast", "HourShare",
            "ProductForecast", "ErrorResponse"]
    missing = []
    for name in ours:
        for field, prop in schemas[name].get("properties", {}).items():
            if not prop.get("description") or "examples" not in prop:
                missing.append(f"{name}.{field}")
    assert not missing, missing
    units = schemas["ProposalLine"]["properties"]
    assert "pack" in units["qty_packs"]["description"] and "unit" in units["qty_units"]["description"]
