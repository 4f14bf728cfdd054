"""What the API reads from the source database: master data at load, every store's recent counts and orders.

The counts and orders are read for all stores at once and kept in memory (``serving.counts``); a cheap watermark
query tells when they changed. ``store_inventory`` (one store) is what ``serving.inventory_ttl_s = 0`` reads per
request, and what tests compare against.

Why its own reader: a request must fail fast and cleanly when the source is down (a 503 that says so, with no
credentials), and recover by itself when it returns; so every read goes through one place that maps driver errors
to ``SourceUnavailable``, drops pooled connections after a failure, and uses SQLAlchemy Core (parameterised SQL).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from forecasting.errors import DataError, ReplenishError, SourceUnavailable
from forecasting.source.db import make_engine, safe_url
from forecasting.source.schema import SourceSchema, build_schema

log = logging.getLogger("bentoml.replenishment.source")  # under "bentoml": shown by its log config


@dataclass(frozen=True)
class MasterData:
    """The source's master tables the engine needs (read once per model load)."""

    stores: pd.DataFrame  # store_id, timezone, open_date, close_date
    materials: pd.DataFrame  # t_material
    bom: pd.DataFrame  # product_id, material_id, qty_per_unit
    suppliers: pd.DataFrame  # t_supplier


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", None)
    text = str(args[-1] if args else orig) or type(orig).__name__
    return text.splitlines()[0][:200]


class SourceReader:
    """Thread-safe, lazily connected reader; ``ok`` tells whether the last read succeeded.

    Every wait is bounded: the connect by ``timeout_s``, the handshake, the pool's pre-ping and each read by
    ``query_timeout_s``; pooled connections are re-authenticated every ``recycle_s``.
    """

    def __init__(self, url: str, tables: dict[str, str] | None = None, timeout_s: int = 3,
                 query_timeout_s: int = 5, recycle_s: int = 300) -> None:
        self.url = url
        self.schema: SourceSchema = build_schema(tables)
        self.timeout_s = timeout_s
        self.query_timeout_s = query_timeout_s  # every read, handshake and ping: a hanging source is an error
        self.recycle_s = recycle_s
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self.ok: bool | None = None
        self._last_reason: str | None = None

    @property
    def where(self) -> str:
        return safe_url(self.url)

    def _get_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = make_engine(self.url, self.schema, self.timeout_s,
                                           read_timeout_s=self.query_timeout_s, pool_recycle_s=self.recycle_s)
            return self._engine

    def _read(self, stmt, what: str) -> pd.DataFrame:
        try:
            eng = self._get_engine()
            with eng.connect() as conn:
                df = pd.read_sql(stmt, conn)
        except ReplenishError:
            self.ok = False
            raise
        except (SQLAlchemyError, OSError) as exc:
            reason = _reason(exc)
            # One warning per outage (and per new reason), not one per check: an outage of hours stays readable.
            level = logging.WARNING if self.ok is not False or reason != self._last_reason else logging.DEBUG
            self.ok, self._last_reason = False, reason
            with self._lock:  # drop pooled connections: the next read reconnects (e.g. a recreated database)
                if self._engine is not None:
                    self._engine.dispose()
            log.log(level, "source %s: reading %s failed: %s", self.where, what, reason)
            raise SourceUnavailable(f"source database unreachable while reading {what}") from None
        if self.ok is False:
            log.info("source %s: reachable again (reading %s)", self.where, what)
        self.ok = True
        return df

    def master(self) -> MasterData:
        s = self.schema
        st, m, b, sp = s["stores"], s["materials"], s["bom"], s["suppliers"]
        stores = self._read(select(st.c.store_id, st.c.timezone, st.c.open_date, st.c.close_date), "stores")
        materials = self._read(select(m), "materials")
        bom = self._read(select(b.c.product_id, b.c.material_id, b.c.qty_per_unit), "bom")
        suppliers = self._read(select(sp), "suppliers")
        if stores.empty or materials.empty or bom.empty or suppliers.empty:
            raise DataError("source has no stores, materials, bom or suppliers: nothing to replenish")
        return MasterData(stores, materials, bom, suppliers)

    def store_inventory(self, store_id: int, position_date: date, lookback_days: int) -> tuple[pd.DataFrame,
                                                                                                 pd.DataFrame]:
        """One store's counts in the lookback window and its replenishment orders (open or recently received)."""
        return self.inventory_since(position_date - timedelta(days=lookback_days), position_date, store_id)

    def inventory_since(self, lo: date, hi: date, store_id: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Counts dated ``lo``..``hi`` and orders open or received on/after ``lo``, of every store or of
        ``store_id`` (two queries)."""
        s = self.schema
        inv, od = s["inventory_snapshots"], s["replenishment_orders"]
        inv_where = [inv.c.snapshot_date >= lo, inv.c.snapshot_date <= hi]
        od_where = [or_(od.c.received_on.is_(None), od.c.received_on >= lo)]
        if store_id is not None:
            inv_where.append(inv.c.store_id == store_id)
            od_where.append(od.c.store_id == store_id)
        counts = self._read(
            select(inv.c.store_id, inv.c.material_id, inv.c.snapshot_date, inv.c.on_hand_qty, inv.c.waste_qty)
            .where(*inv_where),
            "inventory counts",
        )
        orders = self._read(
            select(od.c.order_no, od.c.store_id, od.c.material_id, od.c.ordered_on, od.c.qty, od.c.expected_delivery,
                   od.c.received_on, od.c.received_qty, od.c.status)
            .where(*od_where),
            "replenishment orders",
        )
        return counts, orders

    def inventory_watermark(self, lo: date) -> tuple:
        """A cheap fingerprint of what ``inventory_since(lo, ...)`` would read: row counts, newest dates, sums.

        Why aggregates rather than a change column: the source contract has no ``updated_at``. New rows, new dates,
        corrected quantities, receipts and most status changes move one of these; the caller still re-reads in
        full now and then for an edit that keeps them all equal.
        """
        s = self.schema
        inv, od = s["inventory_snapshots"], s["replenishment_orders"]
        a = self._read(
            select(func.count(), func.max(inv.c.snapshot_date), func.sum(inv.c.on_hand_qty),
                   func.sum(inv.c.waste_qty)).where(inv.c.snapshot_date >= lo),
            "inventory watermark",
        )
        b = self._read(
            select(func.count(), func.max(od.c.order_no), func.max(od.c.ordered_on), func.sum(od.c.qty),
                   func.count(od.c.received_on), func.sum(od.c.received_qty), func.sum(func.length(od.c.status)))
            .where(or_(od.c.received_on.is_(None), od.c.received_on >= lo)),
            "inventory watermark",
        )
        return tuple(str(v) for v in (*a.iloc[0].tolist(), *b.iloc[0].tolist()))

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
