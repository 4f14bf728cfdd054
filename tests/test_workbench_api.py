"""The API beside the workbench, in process on a copy of the serving world's source: the planner's number beside the
engine's on ``/replenishment`` lines, and an inventory that lists only some materials is never read as silent zeros
(``inventory_scope`` complete: a warning naming them; partial: the source's counts for them, and a warning)."""

from __future__ import annotations

import shutil

import pytest
from test_serving_fastpath import _engine
from test_serving_support import world

from forecasting.config import load_settings
from forecasting.source.db import open_source
from planning import lifecycle
from planning.plan import run_plan
from serving.schemas import ReplenishmentRequest


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> dict:
    w = world(tmp_path_factory)
    db = tmp_path_factory.mktemp("wb-api") / "source.db"
    shutil.copy(f"{w['root']}/source.db", db)
    return {"world": w, "url": f"sqlite:///{db}"}


def test_partial_inventory_warns_and_partial_scope_uses_the_source_counts(source_copy):
    eng, st = _engine(source_copy, ttl=0)
    day = sorted(st.windows)[0]
    full = eng.replenish(ReplenishmentRequest(store_id=1, order_date=day))  # the source's counts
    by_source = {ln.material_id: ln for ln in full.lines}
    listed = next(ln for ln in full.lines if ln.on_hand_used > 0)
    inv = [{"material_id": listed.material_id, "on_hand": listed.on_hand_used, "on_order": 0.0}]
    complete = eng.replenish(ReplenishmentRequest(store_id=1, order_date=day, inventory=inv))
    unlisted = [ln.material_id for ln in complete.lines if ln.material_id != listed.material_id]
    assert unlisted and len(complete.warnings) == 1
    w = complete.warnings[0]
    assert "taken as 0 on hand and 0 on order" in w and f"{len(unlisted)} it does not list" in w
    assert str(unlisted[0]) in w and "inventory_scope 'partial'" in w
    partial = eng.replenish(ReplenishmentRequest(store_id=1, order_date=day, inventory=inv,
                                                 inventory_scope="partial"))
    assert len(partial.warnings) == 1 and "use the source's latest counts" in partial.warnings[0]
    for ln in partial.lines:
        if ln.material_id != listed.material_id:  # the unlisted lines are the source-count lines
            assert ln.qty_packs == by_source[ln.material_id].qty_packs
            assert ln.on_hand_used == by_source[ln.material_id].on_hand_used
    # the 'complete' answer orders at least as much (zeros), and more somewhere: the scope matters
    packs_complete = sum(ln.qty_packs for ln in complete.lines)
    assert packs_complete > sum(ln.qty_packs for ln in partial.lines)
    assert eng.replenish_json(ReplenishmentRequest(store_id=1, order_date=day, inventory=inv,
                                                   inventory_scope="partial")) == \
        partial.model_dump_json().encode()


def test_replenishment_lines_show_the_planners_number_beside_the_engines(source_copy):
    w = source_copy["world"]
    eng, st = _engine(source_copy, ttl=0)
    day = sorted(st.windows)[0]
    settings = load_settings(w["config"], environ={})
    db, schema = open_source(source_copy["url"])
    run_plan(settings, db, schema, day, store_ids=[1], reports=False)
    req = ReplenishmentRequest(store_id=1, order_date=day)
    before = eng.replenish(req)
    line = next(ln for ln in before.lines if ln.is_order_day)
    assert line.final_packs == line.qty_packs and line.planner_packs is None and line.proposal_status == "draft"
    lifecycle.override(db, schema, day, 1, line.material_id, line.qty_packs + 4, "new office opening", "ana")
    lifecycle.approve(db, schema, day, 1, "ana")
    after = {ln.material_id: ln for ln in eng.replenish(req).lines}[line.material_id]
    assert (after.qty_packs, after.final_packs, after.planner_packs) == (line.qty_packs, line.qty_packs + 4,
                                                                         line.qty_packs + 4)
    assert after.override_reason == "new office opening" and after.proposal_status == "approved"
    assert eng.replenish_json(req) == eng.replenish(req).model_dump_json().encode()
    db.dispose()
