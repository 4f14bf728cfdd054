"""The API's fast path and its in-memory counts, in process, on a copy of the small serving world's real source.

Why these: ``/replenishment`` serialises plain dicts (``Engine.replenish_json``) instead of the pydantic models, and
answers requests without inventory from counts kept in memory (``serving.counts``). Both must give exactly what the
reference gives: ``forecasting.inventory.proposal.line_for`` over ``positions`` of the counts
``SourceReader.store_inventory`` reads for that store (what the engine did per request before), serialised
through ``ReplenishmentResponse``.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest
from sqlalchemy import create_engine, text
from test_serving_support import world

from forecasting.config import load_settings
from forecasting.inventory.policy import CountAssessment, Position
from forecasting.inventory.proposal import line_for, positions
from serving.engine import BadRequest, Engine, NotFound, ServingState, Unavailable
from serving.lifecycle import ModelWatcher
from serving.schemas import ReplenishmentRequest, ReplenishmentResponse
from serving.source import SourceReader

COUNTS = "t_inventory_snapshot"


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> dict:
    """The world's source copied (this module edits counts and hides a table), and its settings."""
    w = world(tmp_path_factory)
    db = tmp_path_factory.mktemp("fastpath") / "source.db"
    shutil.copy(f"{w['root']}/source.db", db)
    return {"world": w, "url": f"sqlite:///{db}"}


def _engine(source_copy: dict, ttl: float) -> tuple[Engine, ServingState]:
    s = load_settings(source_copy["world"]["config"], environ={})
    s = s.model_copy(update={
        "source": s.source.model_copy(update={"url": source_copy["url"]}),
        "serving": s.serving.model_copy(update={"inventory_ttl_s": ttl}),
    })
    eng = Engine(s, SourceReader(s.source.url, s.source.tables))
    assert ModelWatcher(eng, s).poll_once(), eng.last_error
    return eng, eng.state


def _execute(url: str, sql: str, **params) -> None:
    e = create_engine(url)
    with e.begin() as conn:
        conn.execute(text(sql), params)
    e.dispose()


def _reference(eng: Engine, st: ServingState, req: ReplenishmentRequest) -> bytes:
    """What the engine answered before the fast path, built the way it was built then."""
    cfg = eng.settings.replenishment
    wd = st.windows[req.order_date]
    si = wd.store_index(req.store_id)
    position_date = req.order_date - timedelta(days=1)
    if req.inventory is None:
        counts, orders = SourceReader(eng.source.url).store_inventory(req.store_id, position_date,
                                                                      cfg.counts.lookback_days)
        held = [(mi, c, p) for (_, mi), (c, p) in positions(wd.for_store(si), counts, cfg, orders=orders).items()]
    else:
        given = {i.material_id: i for i in req.inventory}
        held = []
        for mi, mid in enumerate(wd.material_ids.tolist()):
            item = given.get(mid)
            if (item is None and wd.prot_mean[si, mi] <= 0) or not (wd.wins[mi].is_order_day
                                                                    or cfg.emit_non_order_days):
                continue
            if item is None:
                held.append((mi, CountAssessment(None, None, 0.0, "missing", "not in the request's inventory: on "
                                                 "hand taken as 0", 0.0), Position(0.0, 0.0, 0.0, 0.0, 0.0, [])))
            else:
                held.append((mi, CountAssessment(item.on_hand, position_date, item.on_hand, "ok", "", 0.0),
                             Position(item.on_hand, item.on_order, 0.0, item.on_order, 0.0, [])))
    lines = [line_for(wd, si, mi, c, p, cfg, st.model_version, st.data_date, service_level=req.service_level)
             for mi, c, p in held]
    return ReplenishmentResponse(
        store_id=req.store_id, order_date=req.order_date, model_version=st.model_version, data_date=st.data_date,
        inventory_source="source" if req.inventory is None else "request", lines=lines,
        warnings=eng._prepare(req)[4],  # the unlisted materials' warning (inventory scope) is the engine's own
    ).model_dump_json().encode()


def test_fast_path_gives_the_reference_bytes_for_whole_stores(source_copy):
    """Source counts (with an implausible one), request inventory, a service-level override: byte for byte."""
    eng, st = _engine(source_copy, ttl=30)
    day = sorted(st.windows)[0]
    wd = st.windows[day]
    si = wd.store_index(2)
    mi = next(m for m in range(len(wd.material_ids)) if wd.prot_mean[si, m] > 0)
    mid = int(wd.material_ids[mi])
    _execute(source_copy["url"], f"UPDATE {COUNTS} SET on_hand_qty = -40 WHERE store_id = 2 AND material_id = :m "
                                 "AND snapshot_date = :d", m=mid, d=day - timedelta(days=1))
    assert eng.counts.refresh(st)  # the watermark moved: re-read
    used = [int(m) for m in wd.material_ids[:12]]
    inventory = [{"material_id": m, "on_hand": 1500.0 * k, "on_order": 250.0 * (k % 3)} for k, m in enumerate(used)]
    requests = [
        ReplenishmentRequest(store_id=2, order_date=day),
        ReplenishmentRequest(store_id=2, order_date=day, service_level=0.97),
        ReplenishmentRequest(store_id=1, order_date=day + timedelta(days=3)),
        ReplenishmentRequest(store_id=2, order_date=day, inventory=inventory),
        ReplenishmentRequest(store_id=3, order_date=day + timedelta(days=1), inventory=inventory, service_level=0.6),
    ]
    for req in requests:
        want = _reference(eng, st, req)
        assert eng.replenish_json(req) == want
        assert eng.replenish_json(req) == want  # the second answer (kept bytes for source counts) too
        assert eng.replenish(req).model_dump_json().encode() == want
    flagged = [ln for ln in eng.replenish(requests[0]).lines if ln.material_id == mid]
    assert flagged and flagged[0].count_flag != "ok" and flagged[0].on_hand_counted == -40.0
    assert flagged[0].needs_review and "count_" + flagged[0].count_flag in flagged[0].reason_codes


def test_counts_in_memory_follow_the_source_and_drop_when_it_is_unreachable(source_copy):
    eng, st = _engine(source_copy, ttl=30)
    day = sorted(st.windows)[0]
    plain = ReplenishmentRequest(store_id=1, order_date=day)
    with_inventory = ReplenishmentRequest(store_id=1, order_date=day, inventory=[{"material_id": 1, "on_hand": 5.0}])
    before = eng.replenish(plain)
    assert before.inventory_source == "source" and eng.status().counts_read_at is not None
    assert not eng.counts.refresh(st)  # nothing changed: no re-read

    line = next(ln for ln in before.lines if ln.count_date is not None)
    _execute(source_copy["url"], f"UPDATE {COUNTS} SET on_hand_qty = on_hand_qty + 1 WHERE store_id = 1 AND "
                                 "material_id = :m AND snapshot_date = :d", m=line.material_id, d=line.count_date)
    assert eng.counts.refresh(st)
    after = {ln.material_id: ln for ln in eng.replenish(plain).lines}
    assert after[line.material_id].on_hand_counted == line.on_hand_counted + 1
    assert eng.replenish_json(plain) == _reference(eng, st, plain)

    _execute(source_copy["url"], f"ALTER TABLE {COUNTS} RENAME TO hidden")  # the source breaks
    try:
        assert not eng.counts.refresh(st)
        with pytest.raises(Unavailable, match="unreachable.*send `inventory`") as exc:
            eng.replenish_json(plain)
        assert exc.value.status == 503 and eng.cached_answer(plain) is None
        assert eng.replenish_json(with_inventory)  # requests with inventory are unaffected
        assert eng.status().counts_error and eng.status().source_ok is False
    finally:
        _execute(source_copy["url"], f"ALTER TABLE hidden RENAME TO {COUNTS}")
    assert eng.counts.refresh(st)  # back by itself on the next check
    assert eng.replenish_json(plain) == _reference(eng, st, plain)
    assert eng.status().counts_error is None and eng.status().source_ok is True


def test_without_a_ttl_every_request_reads_the_source(source_copy):
    eng, st = _engine(source_copy, ttl=0)
    day = sorted(st.windows)[0]
    plain = ReplenishmentRequest(store_id=3, order_date=day)
    assert eng.counts.snapshot is None and eng.cached_answer(plain) is None
    assert eng.replenish_json(plain) == _reference(eng, st, plain)
    _execute(source_copy["url"], f"ALTER TABLE {COUNTS} RENAME TO hidden")
    try:
        with pytest.raises(Unavailable, match="unreachable"):
            eng.replenish_json(plain)
    finally:
        _execute(source_copy["url"], f"ALTER TABLE hidden RENAME TO {COUNTS}")
    assert eng.replenish_json(plain) == _reference(eng, st, plain)


def test_an_unknown_material_or_store_is_a_404_on_the_fast_path(source_copy):
    eng, st = _engine(source_copy, ttl=30)
    day = sorted(st.windows)[0]
    with pytest.raises(NotFound, match="unknown material_id 987654"):
        eng.replenish_json(ReplenishmentRequest(store_id=1, order_date=day,
                                                inventory=[{"material_id": 987654, "on_hand": 1.0}]))
    with pytest.raises(NotFound, match="unknown store_id 77"):
        eng.replenish_json(ReplenishmentRequest(store_id=77, order_date=day))
    with pytest.raises(BadRequest, match="outside what model"):
        eng.replenish_json(ReplenishmentRequest(store_id=1, order_date=date(2020, 1, 1)))
