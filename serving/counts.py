"""The source's latest counts and on-order for every store, held in memory and refreshed in the background.

Why: a request without inventory used to read its store's counts and orders from the source (two queries and a
pandas pass); at 100 req/s those reads saturated the two cores (p99 2 s). Now every store's counts and orders are
read at once when a model is loaded and again only when a cheap watermark query of the snapshot and order tables
says they changed, checked every ``serving.inventory_ttl_s`` by a background thread (plus a full re-read every
``FULL_EVERY`` checks, for an edit the watermark cannot see). The positions of a (store, order date) are computed
once per read: the first order date of every store when the counts are read, any other date on its first request.

A failed check drops the counts: requests without inventory get a 503 that says so (never counts the source can no
longer confirm), requests with inventory are unaffected, and the next good check reads everything again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecasting.config import Settings
from forecasting.errors import ReplenishError, SourceUnavailable
from forecasting.inventory.policy import CountAssessment, Position
from forecasting.inventory.proposal import WindowDemand, positions
from serving.source import SourceReader

if TYPE_CHECKING:
    from serving.engine import ServingState

log = logging.getLogger("bentoml.replenishment.counts")
Held = list[tuple[int, CountAssessment, Position]]  # (material index, count, position) per line, in line order
FULL_EVERY = 20  # checks: a full re-read at least this often even when the watermark has not moved
EAGER_DATES = 2  # order dates per store whose positions are computed when the counts are read


def _days(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values).to_numpy("datetime64[D]")


@dataclass
class CountsSnapshot:
    """Every store's counts (``lo``..``hi``) and orders as read at ``read_at``; positions are added as computed."""

    counts: dict[int, pd.DataFrame]
    orders: dict[int, pd.DataFrame]
    count_days: dict[int, np.ndarray]  # per store: the counts' snapshot dates (datetime64[D])
    received: dict[int, np.ndarray]  # per store: the orders' receipt dates (NaT = not received)
    lo: date
    hi: date
    mark: tuple
    read_at: str
    version: int
    held: dict[tuple, Held] = field(default_factory=dict)  # (state cache key, store, order date) -> positions

    def covers(self, lo: date, hi: date) -> bool:
        return self.lo <= lo and self.hi >= hi


def counts_range(state: ServingState, lookback_days: int) -> tuple[date, date]:
    """Snapshot dates any order date of ``state`` looks at: lookback before the first, up to the day before the last."""
    days = sorted(state.windows)
    return days[0] - timedelta(days=1 + lookback_days), days[-1] - timedelta(days=1)


class CountsCache:
    """The in-memory counts an engine answers requests without inventory from; ``refresh`` is the whole update."""

    def __init__(self, source: SourceReader, settings: Settings) -> None:
        self.source = source
        self.settings = settings
        self.snapshot: CountsSnapshot | None = None
        self.error: str | None = None  # why there are no counts (the last check failed)
        self._since_full = 0
        self._version = 0
        self._lock = threading.Lock()  # one refresh at a time (the model watcher and the counts thread)
        self._miss_lock = threading.Lock()
        self.confirmed_at: float | None = None  # monotonic time the source last answered a check

    @property
    def stale_after_s(self) -> float:
        """Counts unconfirmed for longer are not served: one check period, plus the longest wait for one read."""
        s = self.settings.serving
        return s.inventory_ttl_s + s.source_query_timeout_s + 2.0

    def stale(self) -> str | None:
        """Why the counts in memory can no longer be trusted (the source stopped answering checks), or None.

        Why on the request path: a source that hangs blocks the checking thread rather than failing it, so the
        thread cannot drop the counts in time; requests look at the age of the last answer instead.
        """
        if self.snapshot is None or self.confirmed_at is None or self.settings.serving.inventory_ttl_s <= 0:
            return None
        age = time.monotonic() - self.confirmed_at
        if age <= self.stale_after_s:
            return None
        return f"source database unreachable: no answer to the counts check for {age:.0f} s"

    # ------------------------------------------------------------------------------------------------------------
    def refresh(self, state: ServingState, *, also: ServingState | None = None, force: bool = False) -> bool:
        """Check the watermark and re-read when it moved (or ``force``); True when new counts were installed.

        ``also``: the state still serving while ``state`` is being loaded; the counts cover both, so its requests
        keep their counts until the swap. On a source failure the counts are dropped (``error`` says why) and
        SourceUnavailable is not raised: the callers are background loops; requests see the error.
        """
        lookback = self.settings.replenishment.counts.lookback_days
        lo, hi = counts_range(state, lookback)
        if also is not None:
            lo2, hi2 = counts_range(also, lookback)
            lo, hi = min(lo, lo2), max(hi, hi2)
        with self._lock:
            try:
                snap = self.snapshot
                if not force and snap is not None and snap.covers(lo, hi) and self._since_full < FULL_EVERY:
                    same = self.source.inventory_watermark(snap.lo) == snap.mark
                    self.confirmed_at = time.monotonic()
                    if same:
                        self._since_full += 1
                        self._warm(snap, state)
                        return False
                t0 = time.perf_counter()
                mark = self.source.inventory_watermark(lo)  # before the read: a change during it re-reads next time
                self.confirmed_at = time.monotonic()  # the source answers; the full read below may take a while
                counts, orders = self.source.inventory_since(lo, hi)
                self._version += 1
                snap = self._build(counts, orders, lo, hi, mark)
                self._warm(snap, state)
            except SourceUnavailable as exc:
                self._drop(str(exc))
                return False
            except (ReplenishError, ValueError, KeyError, TypeError) as exc:  # rows the policy cannot use
                self._drop(f"the source's latest counts cannot be used: {str(exc).splitlines()[0][:300]}")
                return False
            self.snapshot, self.error, self._since_full = snap, None, 0
            self.confirmed_at = time.monotonic()
            log.info("latest counts read: %d counts, %d orders, %s..%s, in %.2f s", len(counts), len(orders), lo, hi,
                     time.perf_counter() - t0)
            return True

    def _drop(self, why: str) -> None:
        """No counts until the next good check: requests without inventory get a 503 saying ``why``."""
        if self.snapshot is not None or self.error != why:
            log.warning("latest counts dropped: %s", why)
        self.snapshot, self.error = None, why

    def _build(self, counts: pd.DataFrame, orders: pd.DataFrame, lo: date, hi: date, mark: tuple) -> CountsSnapshot:
        counts = counts.sort_values(["store_id", "material_id", "snapshot_date"], kind="stable")
        orders = orders.sort_values(["store_id", "order_no"], kind="stable")
        c_by = {int(k): g.reset_index(drop=True) for k, g in counts.groupby("store_id", sort=False)}
        o_by = {int(k): g.reset_index(drop=True) for k, g in orders.groupby("store_id", sort=False)}
        return CountsSnapshot(
            counts=c_by, orders=o_by,
            count_days={k: _days(g["snapshot_date"]) for k, g in c_by.items()},
            received={k: _days(g["received_on"]) for k, g in o_by.items()},
            lo=lo, hi=hi, mark=mark, read_at=datetime.now(UTC).isoformat(timespec="seconds"), version=self._version,
        )

    def _warm(self, snap: CountsSnapshot, state: ServingState) -> None:
        """Positions of the first order dates of every store, so the usual request finds them ready."""
        for day in sorted(state.windows)[:EAGER_DATES]:
            wd = state.windows[day]
            for si, store in enumerate(wd.store_ids.tolist()):
                self._held(snap, state, wd, si, int(store))
        if len(snap.held) > 4 * len(state.store_ids) * max(len(state.windows), 1):  # states replaced long ago
            for k in [k for k in snap.held if k[0] != state.cache_key]:
                snap.held.pop(k, None)

    # ------------------------------------------------------------------------------------------------------------
    def _held(self, snap: CountsSnapshot, state: ServingState, wd: WindowDemand, si: int, store_id: int) -> Held:
        key = (state.cache_key, store_id, wd.order_date)
        hit = snap.held.get(key)
        if hit is not None:
            return hit
        with self._miss_lock:  # concurrent first requests for one store compute it once
            hit = snap.held.get(key)
            if hit is not None:
                return hit
            return self._compute(snap, key, wd, si, store_id)

    def _compute(self, snap: CountsSnapshot, key: tuple, wd: WindowDemand, si: int, store_id: int) -> Held:
        cfg = self.settings.replenishment
        position_date = wd.order_date - timedelta(days=1)
        lo = np.datetime64(position_date - timedelta(days=cfg.counts.lookback_days), "D")
        counts = snap.counts.get(store_id)
        if counts is None:
            counts = pd.DataFrame(columns=["store_id", "material_id", "snapshot_date", "on_hand_qty", "waste_qty"])
        else:
            d = snap.count_days[store_id]
            counts = counts[(d >= lo) & (d <= np.datetime64(position_date, "D"))]
        orders = snap.orders.get(store_id)
        if orders is not None:
            r = snap.received[store_id]
            orders = orders[np.isnat(r) | (r >= lo)]
        else:
            orders = pd.DataFrame(columns=["order_no", "store_id", "material_id", "ordered_on", "qty",
                                           "expected_delivery", "received_on", "received_qty", "status"])
        try:
            got = positions(wd.for_store(si), counts, cfg, orders=orders)
        except (ReplenishError, ValueError, KeyError, TypeError) as exc:
            raise SourceUnavailable(f"the source's latest counts for store {store_id} cannot be used: "
                                    f"{str(exc).splitlines()[0][:300]}") from None
        held = [(mi, c, p) for (_, mi), (c, p) in got.items()]
        snap.held[key] = held
        return held

    def held(self, state: ServingState, wd: WindowDemand, si: int, store_id: int) -> tuple[Held, CountsSnapshot]:
        """The positions of one store for ``wd``'s order date from the counts in memory; SourceUnavailable if none."""
        snap = self.snapshot
        if snap is None:
            raise SourceUnavailable(self.error or "the latest counts have not been read yet")
        if (why := self.stale()) is not None:
            raise SourceUnavailable(why)
        lookback = self.settings.replenishment.counts.lookback_days
        if not snap.covers(wd.order_date - timedelta(days=1 + lookback), wd.order_date - timedelta(days=1)):
            raise SourceUnavailable(f"the latest counts in memory do not cover order date {wd.order_date} yet")
        return self._held(snap, state, wd, si, store_id), snap


@dataclass
class CountsWatcher:
    """The background thread: ``cache.refresh`` every ``serving.inventory_ttl_s`` for the engine's current state."""

    cache: CountsCache
    current: Callable[[], ServingState | None]  # the engine's state now
    interval_s: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                st = self.current()
                if st is None:
                    continue
                try:
                    self.cache.refresh(st)
                except Exception:  # noqa: BLE001 - the loop must survive anything; the next check retries
                    log.exception("counts refresh failed")

        self._thread = threading.Thread(target=loop, name="counts-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
