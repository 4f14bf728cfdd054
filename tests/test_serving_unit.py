"""The serving pieces without a server: the batch/apply split of the engine, the source reader, the OpenAPI patch."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forecasting.config import ClassPolicy, ReplenishmentConfig, load_settings
from forecasting.errors import SourceUnavailable
from forecasting.inventory.proposal import precompute_window_demand, propose
from serving.engine import Engine, Unavailable
from serving.http import complete_openapi
from serving.schemas import ReplenishmentRequest, ReplenishmentResponse
from serving.source import SourceReader

TUE = date(2025, 3, 4)


def _world() -> dict:
    suppliers = pd.DataFrame({"supplier_id": [1, 2], "lead_time_days": [1, 2], "delivery_weekdays": ["daily", "Thu"],
                              "order_cutoff": ["14:00", "12:00"]})
    materials = pd.DataFrame({
        "material_id": [101, 102, 103], "material_name": ["beans", "milk", "cup"], "unit": ["g", "ml", "each"],
        "pack_size": [1000.0, 3785.0, 50.0], "shelf_life_days": [180, 3, None], "is_perishable": [False, True, False],
        "storage_class": ["ambient", "chilled", "ambient"], "supplier_id": [2, 1, 2], "unit_cost": [0.02, 0.001, 0.1],
    })
    bom = pd.DataFrame({"product_id": [1, 1, 1, 2, 2], "material_id": [101, 102, 103, 101, 103],
                        "qty_per_unit": [18.0, 240.0, 1.0, 18.0, 1.0]})
    rows = [(s, p, TUE + timedelta(days=h), base * (1 + 0.3 * s), 0.2)
            for s in (1, 2, 3) for p, base in ((1, 80.0), (2, 40.0)) for h in range(14)]
    fc = pd.DataFrame(rows, columns=["store_id", "product_id", "date", "mean", "dispersion"])
    inv = pd.DataFrame([(s, m, TUE - timedelta(days=k), 5000.0 - 300 * k, 0.0)
                        for s in (1, 2, 3) for m in (101, 102, 103) for k in range(1, 8)],
                       columns=["store_id", "material_id", "snapshot_date", "on_hand_qty", "waste_qty"])
    return dict(forecasts=fc, materials=materials, bom=bom, suppliers=suppliers, inventory=inv)


def test_any_service_level_is_answered_exactly_from_the_kept_quantiles():
    w = _world()
    cfg = ReplenishmentConfig(n_samples=500)
    wd = precompute_window_demand(w["forecasts"], w["materials"], w["bom"], w["suppliers"], TUE, cfg,
                                  keep_quantiles=True)
    mi = int(np.searchsorted(wd.material_ids, 101))
    for level in (0.5, 0.8, 0.9, 0.953, 0.99, 0.999):
        classes = {**cfg.classes, "ambient": ClassPolicy(service_level=level)}
        ref = precompute_window_demand(w["forecasts"], w["materials"], w["bom"], w["suppliers"], TUE,
                                       cfg.model_copy(update={"classes": classes}))
        for si in range(len(wd.store_ids)):
            assert wd.quantile(si, mi, level) == ref.q_level[si, mi]


def test_one_store_view_gives_that_stores_lines_of_the_full_proposal():
    w = _world()
    cfg = ReplenishmentConfig(n_samples=300)
    full = propose(w["forecasts"], w["materials"], w["bom"], w["suppliers"], w["inventory"], TUE, cfg, "m",
                   TUE - timedelta(days=1))
    wd = precompute_window_demand(w["forecasts"], w["materials"], w["bom"], w["suppliers"], TUE, cfg)
    si = wd.store_index(2)
    one = propose(w["forecasts"], w["materials"], w["bom"], w["suppliers"], w["inventory"], TUE, cfg, "m",
                  TUE - timedelta(days=1), window_demand=wd.for_store(si))
    assert [ln.model_dump() for ln in one] == [ln.model_dump() for ln in full if ln.store_id == 2]
    assert wd.store_index(7) is None


def test_an_unreachable_source_is_one_line_without_the_password(caplog):
    reader = SourceReader("mysql://planner:hunter2@127.0.0.1:1/ireplenishment", timeout_s=1)
    with caplog.at_level(logging.WARNING), pytest.raises(SourceUnavailable) as exc:
        reader.store_inventory(1, TUE, 28)
    assert "unreachable" in str(exc.value) and "hunter2" not in str(exc.value)
    assert "hunter2" not in caplog.text and "***" in caplog.text
    assert reader.ok is False


def test_an_engine_without_a_model_answers_503_with_the_reason():
    eng = Engine(load_settings(environ={}), SourceReader("sqlite:///:memory:"))
    eng.last_error = "model v9: no cached forecasts"
    with pytest.raises(Unavailable, match="no model loaded yet: model v9") as exc:
        eng.replenish(ReplenishmentRequest(store_id=1, order_date=TUE))
    assert exc.value.status == 503 and not eng.ready() and eng.status().ready is False


def test_openapi_gets_exact_nullable_schemas_and_the_error_responses():
    spec = {"openapi": "3.0.2", "paths": {"/replenishment": {"post": {"responses": {"200": {}}}},
                                          "/readyz": {"get": {"responses": {"200": {}}}}}}
    out = complete_openapi(spec, {"/replenishment": (ReplenishmentRequest, ReplenishmentResponse)}, token=True)
    op = out["paths"]["/replenishment"]["post"]
    assert out["openapi"] == "3.1.0" and set(op["responses"]) == {"200", "400", "401", "404", "413", "415", "503"}
    line = out["components"]["schemas"]["ProposalLine"]["properties"]["count_date"]
    assert {"type": "null"} in line["anyOf"]
    assert "503" in out["paths"]["/readyz"]["get"]["responses"] and "security" not in out["paths"]["/readyz"]["get"]


def test_serve_command_is_registered():
    from replenish.cli import app

    res = CliRunner().invoke(app, ["serve", "--help"])
    assert res.exit_code == 0 and "import-model" in res.output and "--port" in res.output
