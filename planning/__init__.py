"""Glue between the source database, the forecast cache and the pure engine: plans, reports, overrides, replay."""
