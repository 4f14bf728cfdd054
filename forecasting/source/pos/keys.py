"""Dense integer ids for a POS log's text keys, stable across re-imports: the key -> id map lives in the source.

Why a stored map and not a hash: models index series by id, so ids must be small and dense (a hash spreads them up
to 2^31); and a growing log re-imported with ``--replace`` must give the same product the same id, which a running
number does only if it remembers earlier imports. The map (``t_source_key``, beside ``t_source_meta``) is not part
of the history: ``--replace`` keeps it; new keys get the next ids in the import's own transaction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Column, Connection, Engine, String, Table, inspect, select
from sqlalchemy.dialects import mysql

from forecasting.errors import DataError
from forecasting.source.schema import SourceSchema

KEY_TABLE = "source_keys"
KEY_LEN = 255
_INT = r"[+-]?\d{1,18}"


def key_table(schema: SourceSchema) -> Table:
    """``t_source_key`` in the same database as ``t_source_meta``; registered in the schema once."""
    if KEY_TABLE not in schema.tables:
        meta = schema["meta"]
        key_type = String(KEY_LEN).with_variant(mysql.VARCHAR(KEY_LEN, collation="utf8mb4_bin"), "mysql", "mariadb")
        schema.tables[KEY_TABLE] = Table(
            "t_source_key", schema.metadata,
            Column("kind", String(16), primary_key=True),
            Column("source_key", key_type, primary_key=True),
            Column("id", BigInteger, nullable=False),
            schema=meta.schema,
        )
    return schema.tables[KEY_TABLE]


class KeyMap:
    """The stored map, read per kind on first use, plus the rows this import adds."""

    def __init__(self, engine: Engine | None = None, schema: SourceSchema | None = None) -> None:
        self.engine, self.schema = engine, schema
        self.known: dict[str, pd.Series] = {}
        self.new: list[pd.DataFrame] = []

    def _stored(self, kind: str) -> pd.Series:
        if kind not in self.known:
            self.known[kind] = pd.Series(dtype="int64")
            if self.engine is not None and self.schema is not None:
                t = key_table(self.schema)
                with self.engine.connect() as conn:
                    if _exists(conn, t):
                        rows = conn.execute(select(t.c.source_key, t.c.id).where(t.c.kind == kind)).all()
                        self.known[kind] = pd.Series([r[1] for r in rows], index=[r[0] for r in rows],
                                                     dtype="int64")
        return self.known[kind]

    def ids(self, keys: pd.Series, kind: str, max_id: int) -> pd.Series:
        """Integer ids per key: the source's own when every key is an integer in 0..max_id, else dense ids from the
        stored map (new keys numbered on from the largest id of that kind)."""
        codes, uniques = pd.factorize(keys, sort=False)
        uniq = pd.Series(uniques, dtype="string")
        as_int = pd.to_numeric(uniq.where(uniq.str.fullmatch(_INT)), errors="coerce")
        if len(uniq) and as_int.notna().all() and as_int.between(0, max_id).all() and as_int.nunique() == len(uniq):
            return pd.Series(as_int.astype("int64").to_numpy()[codes], index=keys.index, dtype="int64")
        too_long = uniq[uniq.str.len() > KEY_LEN]
        if len(too_long):
            raise DataError(f"a {kind} key is longer than {KEY_LEN} characters: {str(too_long.iloc[0])[:60]!r}...")
        stored = self._stored(kind)
        ids = stored.reindex(uniq.to_numpy()).to_numpy(dtype="float64")
        fresh = np.isnan(ids)
        if fresh.any():
            start = int(stored.max()) + 1 if len(stored) else 1
            ids[fresh] = np.arange(start, start + int(fresh.sum()))
            if start + int(fresh.sum()) - 1 > max_id:
                raise DataError(f"more {kind} keys than ids up to {max_id}")
            added = pd.Series(ids[fresh].astype("int64"), index=uniq[fresh].to_numpy())
            self.known[kind] = pd.concat([stored, added])
            self.new.append(pd.DataFrame({"kind": kind, "source_key": added.index.astype(str),
                                          "id": added.to_numpy()}))
        return pd.Series(ids.astype("int64")[codes], index=keys.index, dtype="int64")

    def rows(self) -> pd.DataFrame:
        """The keys this import adds (inserted with the history, in its transaction)."""
        if not self.new:
            return pd.DataFrame(columns=["kind", "source_key", "id"])
        return pd.concat(self.new, ignore_index=True)


def _exists(conn: Connection, t: Table) -> bool:
    return inspect(conn).has_table(t.name, schema=None if conn.dialect.name == "sqlite" else t.schema)
