"""A local MLflow store that starts with MLflow's tables already in place (no tests here).

Why: the first use of a new local store (``<dir>/mlflow.db``) runs MLflow's whole chain of schema migrations, about
5 s on a loaded machine, and a dozen tests and worlds each start a store of their own. The migrations run once per
session on a template, and each store starts as a copy of it; MLflow then opens it as any store it made itself (it
finds its tables at the latest revision and adds the default experiment). The creation from nothing stays covered
where a test asks a store that does not exist yet (``test_forecast_cli_json_and_errors``).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.cache
def _template() -> Path:
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables  # what MLflow itself runs on an empty database

    root = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
    atexit.register(shutil.rmtree, root, True)
    engine = sqlalchemy.create_engine(f"sqlite:///{root / 'mlflow.db'}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    return root / "mlflow.db"


def new_store(root: str | Path) -> Path:
    """``root`` ready as a local store (``mlflow.tracking_uri: root``); an existing database is left as it is."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    db = root / "mlflow.db"
    if not db.exists():
        shutil.copyfile(_template(), db)
    return root
