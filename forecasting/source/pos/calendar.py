"""The public-holiday calendar of a source: checked once, stored with a POS import, read back by the feature build.

Why stored in the source: the calendar belongs to the data (a Paris bakery has Bastille Day, not Thanksgiving),
so the import writes the mapping's country and subdivision to ``t_source_meta`` and the feature build prefers them
over the configured default (US / NY), which still applies to sources that store none (the synthetic history).
"""

from __future__ import annotations

from functools import lru_cache

import holidays
from sqlalchemy import Connection, Table, inspect, select

from forecasting.errors import ConfigError

META_COUNTRY, META_SUBDIV = "holiday_country", "holiday_subdiv"


@lru_cache(maxsize=64)
def check_calendar(country: str, subdiv: str | None, origin: str = "holidays") -> tuple[str, str | None]:
    """(country, subdivision) when the ``holidays`` package knows them, else one ConfigError line saying what to set.

    An empty subdivision means the whole country.
    """
    subdiv = subdiv or None
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ConfigError(f"{origin}: unknown holiday country {country!r} (ISO 3166 code, e.g. US, GB, FR, DE)")
    if subdiv is not None and subdiv not in supported[country]:
        valid = ", ".join(supported[country][:12]) + (", ..." if len(supported[country]) > 12 else "")
        hint = f"one of: {valid}, or none for the whole country" if valid else "none: it has no subdivisions"
        raise ConfigError(f"{origin}: {country} has no subdivision {subdiv!r}; set the subdivision to {hint}")
    return country, subdiv


def stored_calendar(conn: Connection, meta: Table | None) -> tuple[str, str | None] | None:
    """The calendar a POS import stored in the source metadata table, or None when there is none."""
    if meta is None or not inspect(conn).has_table(meta.name, schema=meta.schema if conn.dialect.name != "sqlite"
                                                   else None):
        return None
    rows = dict(conn.execute(select(meta.c.key, meta.c.value).where(meta.c.key.in_([META_COUNTRY, META_SUBDIV]))
                             ).all())
    if not rows.get(META_COUNTRY):
        return None
    return rows[META_COUNTRY], rows.get(META_SUBDIV) or None


def source_calendar(conn: Connection, meta: Table | None, country: str, subdiv: str | None) -> tuple[str, str | None]:
    """The calendar the feature build uses: the source's stored one, else the configured one; both checked."""
    stored = stored_calendar(conn, meta)
    if stored is not None:
        return check_calendar(*stored, origin="source metadata (t_source_meta)")
    return check_calendar(country, subdiv, origin="features.holiday_country / holiday_subdiv")
