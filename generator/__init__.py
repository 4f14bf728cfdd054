"""The synthetic source-data world: a realistic, deterministic history of Luckin Coffee USA's app orders, inventory
and incumbent replenishment, written into the source schema, plus the latent demand it was sampled from.

Public API::

    generate(engine, schema, scenario=None, seed=42, progress=None, *, catalog=None, replace=False, hook=None)
    simulate_world(scenario=None, seed=42, catalog=None) -> (world, tables)   # no database
    generator.stats.compute_stats(engine, schema) -> dict
"""

from generator.api import GENERATOR_VERSION, generate, simulate_world
from generator.catalog import Scenario, load_catalog, load_scenario

__all__ = ["GENERATOR_VERSION", "generate", "simulate_world", "load_catalog", "load_scenario", "Scenario"]
