"""Fast checks of the fault fixes that need no server: request contexts are released, log lines cannot be forged,
the watcher survives anything, stale counts are never served."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import weakref

from serving.http import EscapeControls, escape_controls, invalid_body, release_request_timers

REQUEST = contextvars.ContextVar("request")


def test_a_finished_request_does_not_keep_its_context_alive():
    """BentoML's timeout timer held every request's context (spans, futures, locks) for 60 s; now it is released."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    release_request_timers()
    refs: list[weakref.ref] = []

    class Span:  # stands for what the tracing middleware puts in the context before the timeout middleware runs
        pass

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def sent(_msg) -> None:
        return None

    async def one(mw) -> None:
        span = Span()
        refs.append(weakref.ref(span))
        REQUEST.set(span)
        await mw({"type": "http", "path": "/replenishment"}, None, sent)

    async def main() -> int:
        mw = TimeoutMiddleware(app, timeout=60)
        for _ in range(300):
            await asyncio.create_task(one(mw))  # each request in its own task and context, as under uvicorn
        await asyncio.sleep(0)
        gc.collect()
        return sum(r() is not None for r in refs)  # counted while the loop (and its timers) still run

    alive = asyncio.run(main())
    assert alive <= 110, f"{alive} of 300 finished requests still referenced (the timers held all of them)"


def test_log_records_cannot_forge_lines_or_carry_control_bytes():
    record = logging.LogRecord("bentoml.access", logging.INFO, __file__, 1, "path=%s", ("/x\n2026 [INFO] ok\x1b[31m",),
                               None)
    assert EscapeControls().filter(record)
    out = logging.Formatter("%(message)s").format(record)
    assert "\n" not in out and "\x1b" not in out and "\\n2026 [INFO] ok\\x1b[31m" in out
    assert escape_controls("plain text, ünïcode") == "plain text, ünïcode"
    try:
        raise ValueError("bad key 'a\nFORGED LINE'")
    except ValueError:
        import sys

        rec = logging.LogRecord("bentoml", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    EscapeControls().filter(rec)
    text = logging.Formatter("%(message)s").format(rec)
    assert all(line == "failed" or line.startswith("  | ") for line in text.splitlines()), text


def test_invalid_bodies_are_described_without_internal_names():
    from pydantic import ValidationError

    from serving.schemas import ReplenishmentRequest

    for raw, words in ((b"[]", "body: Input should be an object"), (b"{", "Invalid JSON"),
                       (b'{"store_id": 1, "order_date": "2026-01-01", "x\\ny": 1}', "Extra inputs")):
        try:
            ReplenishmentRequest.model_validate_json(raw)
        except ValidationError as exc:
            body = invalid_body(exc)
        assert words in body["error"] and "ReplenishmentRequest" not in str(body), body
