"""The generator's entry points (also re-exported by ``generator``; import from here in code that may run as an
installed console script, where this project's editable install currently resolves packages as namespaces).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from forecasting.source.db import init_db
from forecasting.source.schema import SourceSchema
from generator.catalog import Catalog, Scenario, load_catalog, load_scenario
from generator.tables import GENERATOR_VERSION  # noqa: F401 - re-exported

Progress = Callable[[str, int, int], None]


def simulate_world(
    scenario: str | Path | Scenario | None = None,
    seed: int = 42,
    catalog: str | Path | Catalog | None = None,
    progress: Progress | None = None,
):
    """Build every table in memory (columnar numpy); returns ``(world, tables, diagnostics)``."""
    from generator.demand import expected_units, sample_hourly
    from generator.orders import build_orders
    from generator.simulate import material_arrays, simulate
    from generator.tables import inventory_tables, master_tables, meta_table, truth_tables
    from generator.world import build_world

    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    sc = load_scenario(scenario)
    world = build_world(cat, sc, seed)
    mu = expected_units(world)
    latent = sample_hourly(world, mu)
    sim = simulate(world, mu, latent, progress=(lambda d, n: progress("simulate", d, n)) if progress else None)
    ma = material_arrays(world)
    tables = master_tables(world, ma)
    tables.update(build_orders(world, sim.sold))
    tables.update(inventory_tables(world, ma, sim))
    tables.update(truth_tables(world, mu, latent.sum(-1)))
    tables["meta"] = meta_table(world)
    if world.rz is not None:  # the realistic scenario's temperature and its forecast (absent in the classic history)
        from generator.realism import weather_daily_table

        tables["weather_daily"] = weather_daily_table(world)

    lat_day = latent.sum(-1)
    sold_day = sim.sold.sum(-1)
    has = lat_day > 0
    perish = ma.perishable
    waste = sim.waste[:, perish].sum()
    used = sim.usage[:, perish].sum()
    diag = {
        "censored_product_days": float(((sold_day < lat_day) & has).sum() / max(1, has.sum())),
        "lost_units_share": float(1 - sold_day.sum() / max(1, lat_day.sum())),
        "perishable_waste_share": float(waste / max(1e-9, waste + used)),
        "units_sold": int(sold_day.sum()),
    }
    return world, tables, diag


def generate(
    engine: Engine,
    schema: SourceSchema,
    scenario: str | Path | Scenario | None = None,
    seed: int = 42,
    progress: Progress | None = None,
    *,
    catalog: str | Path | Catalog | None = None,
    replace: bool = False,
    hook: Callable[[str], None] | None = None,
) -> dict:
    """Generate a history and write it in one transaction; returns a summary (row counts, diagnostics, seconds).

    Creates missing tables first. Raises DataError when a history exists and ``replace`` is false, ConfigError for a
    malformed scenario or catalog. ``progress(stage, done, total)`` reports the stages "simulate" and "write".
    """
    from generator.writer import add_missing_columns, refuse_existing, write_history

    t0 = time.perf_counter()
    init_db(engine, schema)
    add_missing_columns(engine, schema, "demand_truth")  # a source created before realised_qty existed
    if not replace:
        refuse_existing(engine, schema)  # fail fast; checked again inside the write transaction
    world, tables, diag = simulate_world(scenario, seed, catalog, progress)
    t1 = time.perf_counter()
    counts = write_history(
        engine, schema, tables, replace=replace,
        progress=(lambda _t, d, n: progress("write", d, n)) if progress else None, hook=hook,
    )
    t2 = time.perf_counter()
    return {
        "seed": seed,
        "scenario": world.scenario.name,
        "history_start": world.start.isoformat(),
        "history_end": world.end.isoformat(),
        "stores": world.S,
        "rows": counts,
        "diagnostics": {k: round(v, 4) if isinstance(v, float) else v for k, v in diag.items()},
        "seconds": {"simulate": round(t1 - t0, 2), "write": round(t2 - t1, 2)},
        "orders_completed": int(np.sum(tables["orders"]["status"] == "completed")),
    }
