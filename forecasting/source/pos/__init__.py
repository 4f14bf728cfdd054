"""Point-of-sale import: load a real store's sales log into the source schema (``replenish import-pos``)."""

from forecasting.source.pos.loader import ImportReport, import_pos, write_tables
from forecasting.source.pos.mapping import PosMapping, load_mapping
from forecasting.source.pos.reader import read_log, validate

__all__ = ["ImportReport", "PosMapping", "import_pos", "load_mapping", "read_log", "validate", "write_tables"]
