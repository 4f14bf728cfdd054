"""``replenish db``: create the source schema."""

from __future__ import annotations

import typer

from replenish.common import CONFIG, DB, console, example, settings, source

app = typer.Typer(help="Source database administration.", no_args_is_help=True)


@app.command("init", epilog=example("replenish db init --db sqlite:///data/luckin.db",
                                    "replenish db init --db mysql://user:password@db-host/luckin"))
def init(db: str = DB, config: str = CONFIG) -> None:
    """Create every source table (orders side and ireplenishment side) that does not exist yet; existing tables
    and their rows are left alone, so it is safe to re-run."""
    from forecasting.source.db import init_db, safe_url

    cfg = settings(config)
    engine, schema = source(db, cfg)
    created = init_db(engine, schema)
    existed = len(schema.tables) - len(created)
    console.print(f"{safe_url(engine.url)}: created {len(created)} of {len(schema.tables)} tables "
                  f"({existed} existed already)", highlight=False)
