"""``replenish db``: create the source schema."""

from __future__ import annotations

import typer

from replenish.common import console, settings, source

app = typer.Typer(help="Source database administration.", no_args_is_help=True)


@app.command("init")
def init(
    db: str = typer.Option(None, "--db", help="Source database URL (default: configs/, or $REPLENISH_DB_URL)."),
    config: str = typer.Option(None, "--config", help="A YAML file merged over configs/default.yaml."),
) -> None:
    """Create every source table (orders side and ireplenishment side) that does not exist yet."""
    from forecasting.db import init_db, safe_url

    cfg = settings(config)
    engine, schema = source(db, cfg)
    created = init_db(engine, schema)
    console.print(f"{safe_url(engine.url)}: created {len(created)} tables, {len(schema.tables) - len(created)} existed")
