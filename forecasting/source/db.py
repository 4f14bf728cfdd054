"""Data access: engines for the source database (SQLite or MySQL through PyMySQL), with clear failures.

Why a wrapper: every command must turn an unreachable or mistyped ``--db`` into one line without credentials,
within seconds, and SQLite must accept the same schema-qualified table mapping as MySQL.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from forecasting.errors import SourceUnavailable
from forecasting.source.schema import SourceSchema, build_schema


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True) if isinstance(url, str) else url.render_as_string()
    except ArgumentError:
        return "<unparseable URL>"


def parse_url(url: str) -> URL:
    """Parse a database URL; ``mysql://`` means PyMySQL (the driver this project ships)."""
    try:
        u = make_url(url)
    except ArgumentError:
        raise SourceUnavailable(f"not a database URL: {url!r} (expected e.g. sqlite:///data/luckin.db)") from None
    if u.drivername in ("mysql", "mariadb"):
        u = u.set(drivername="mysql+pymysql")
    if u.get_backend_name() not in ("sqlite", "mysql", "mariadb"):
        raise SourceUnavailable(f"unsupported database {u.get_backend_name()!r} in {safe_url(u)}: use sqlite or mysql")
    return u


def _schemas(schema: SourceSchema) -> set[str]:
    return {t.schema for t in schema.tables.values() if t.schema}


def readonly_url(url: str) -> str:
    """A SQLite URL opened read-only (``file:...?mode=ro``), so a reader never creates a file or folder on a typo;
    a missing file is one line that says so. Other databases are returned unchanged (their users hold the rights)."""
    u = parse_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.query.get("mode"):
        return url
    path = Path(u.database).resolve()
    if not path.is_file():
        raise SourceUnavailable(f"no SQLite database at {path}: check --db, or create it with `replenish seed`")
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def make_engine(url: str, schema: SourceSchema | None = None, connect_timeout_s: int = 5, *,
                read_timeout_s: int = 600, pool_recycle_s: int = 3600) -> Engine:
    """Create an engine; SQLite drops schema qualifiers, MySQL gets utf8mb4 and bounded waits.

    Why three bounds on MySQL: PyMySQL's ``connect_timeout`` covers only the TCP connect; the handshake, the pool's
    pre-ping and every query wait for ``read_timeout_s`` (batch jobs keep the long default, the API passes seconds),
    and ``pool_recycle_s`` re-authenticates pooled connections, so a revoked user is cut off within that time.
    """
    u = parse_url(url)
    schema = schema or build_schema()
    try:
        if u.get_backend_name() == "sqlite":
            readonly = u.query.get("mode") == "ro"
            if u.database and u.database != ":memory:" and not readonly:
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(u, connect_args={"timeout": 30})
            engine = engine.execution_options(schema_translate_map={s: None for s in _schemas(schema)})

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _rec):  # pragma: no cover - trivial
                if readonly:  # a read-only connection cannot change the journal mode
                    return
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()
        else:
            q = dict(u.query)
            q.setdefault("charset", "utf8mb4")
            u = u.set(query=q)
            engine = create_engine(
                u,
                pool_pre_ping=True,
                pool_recycle=pool_recycle_s,
                pool_timeout=max(connect_timeout_s, 5),
                connect_args={"connect_timeout": connect_timeout_s, "read_timeout": read_timeout_s,
                              "write_timeout": read_timeout_s},
            )
    except NoSuchModuleError:
        raise SourceUnavailable(f"no driver for {safe_url(u)}") from None
    return engine


def check_connection(engine: Engine) -> None:
    """Open one connection; raise SourceUnavailable with a one-line reason (no credentials) if it fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        orig = getattr(exc, "orig", exc)
        reason = str(orig.args[-1] if getattr(orig, "args", None) else orig).splitlines()[0]
        raise SourceUnavailable(f"cannot reach source database {safe_url(engine.url)}: {reason}") from None


def ensure_schemas(engine: Engine, schema: SourceSchema) -> None:
    """On MySQL, create the databases that schema-qualified table names refer to.

    The names come from configuration (``source.tables``), so they are quoted by the dialect's identifier preparer:
    a name holding a backtick stays one (odd) database name and cannot append SQL.
    """
    if engine.dialect.name != "mysql":
        return
    quote = engine.dialect.identifier_preparer.quote_identifier
    with engine.begin() as conn:
        for name in sorted(_schemas(schema)):
            conn.execute(text(f"CREATE DATABASE IF NOT EXISTS {quote(name)} CHARACTER SET utf8mb4"))


def init_db(engine: Engine, schema: SourceSchema) -> list[str]:
    """Create every source table that does not exist yet; return the physical names created."""
    check_connection(engine)
    ensure_schemas(engine, schema)
    before = existing_tables(engine, schema)
    schema.metadata.create_all(engine, checkfirst=True)
    return sorted(set(existing_tables(engine, schema)) - set(before))


def existing_tables(engine: Engine, schema: SourceSchema) -> list[str]:
    """Logical names of the schema's tables that exist in the database."""
    insp = inspect(engine)
    out = []
    sqlite = engine.dialect.name == "sqlite"
    for logical, table in schema.tables.items():
        if insp.has_table(table.name, schema=None if sqlite else table.schema):
            out.append(logical)
    return out


def table_columns(engine: Engine, schema: SourceSchema, logical: str) -> set[str]:
    """Physical column names of one table (empty when it does not exist): optional columns added later (e.g.
    ``t_demand_truth.realised_qty``) are read only where a source has them."""
    table = schema[logical]
    insp = inspect(engine)
    sch = None if engine.dialect.name == "sqlite" else table.schema
    if not insp.has_table(table.name, schema=sch):
        return set()
    return {c["name"] for c in insp.get_columns(table.name, schema=sch)}


def open_source(
    url: str, mapping: dict[str, str] | None = None, timeout_s: int = 5, readonly: bool = False
) -> tuple[Engine, SourceSchema]:
    """Engine plus schema for a URL, connection checked: the usual start of every job (``readonly`` for readers)."""
    schema = build_schema(mapping)
    engine = make_engine(readonly_url(url) if readonly else url, schema, timeout_s)
    check_connection(engine)
    return engine, schema
