"""``replenish features build``: the feature store from the source database (see ``features/``)."""

from __future__ import annotations

from datetime import date

import typer

from forecasting.errors import ConfigError
from replenish.common import (
    CONFIG,
    DB,
    ENGINE,
    console,
    emit_json,
    err_console,
    example,
    json_flag,
    progress,
    settings,
    source,
)

app = typer.Typer(help="Feature store: store x SKU x hour/day panels, materials, ireplenishment history.",
                  no_args_is_help=True)


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--until: not a date (YYYY-MM-DD): {value!r}") from None


@app.command("build", epilog=example("replenish features build --db sqlite:///data/luckin.db",
                                     "replenish features build --until 2026-01-31 --full --json"))
def build(
    db: str = DB,
    out: str = typer.Option(None, "--out", metavar="DIR", help="Feature store folder (default: features.out_dir, "
                            "data/features)."),
    until: str = typer.Option(None, "--until", metavar="YYYY-MM-DD", help="Last store-local date to include "
                              "(default: the day of the last completed order)."),
    full: bool = typer.Option(False, "--full", help="Rebuild everything instead of extending from the watermark."),
    as_json: bool = json_flag(),
    config: str = CONFIG,
    engine_opt: str = ENGINE,
) -> None:
    """Build or extend the Parquet feature store: units sold per store x product x hour and day (store-local
    time), materials through the recipes, inventory counts. Incremental from the watermark; --full rebuilds."""
    from features.job import build_features
    from forecasting.cluster import resolve_engine
    from forecasting.config import resolve_path

    cfg = settings(config)
    job = build_features
    if resolve_engine(engine_opt, cfg.cluster) == "dask":  # same store, partitions computed on Dask
        from functools import partial

        from features.distributed import build_features_dask

        job = partial(build_features_dask, cluster=cfg.cluster)
    until_date = _parse_date(until)
    engine, schema = source(db, cfg)
    out_dir = resolve_path(out) if out else resolve_path(cfg.features.out_dir)
    with progress(enabled=err_console.is_terminal) as prog:
        task = prog.add_task("features", total=None)

        def report(step: str, done: int, total: int) -> None:
            prog.update(task, description=step, completed=done, total=total)

        summary = job(engine, schema, str(out_dir), until=until_date, full=full, progress=report,
                                 config=cfg.features)
    if as_json:
        emit_json(summary)
        return
    _print_summary(summary)


def _print_summary(s: dict) -> None:
    from rich.table import Table

    t = Table(title=f"features {s['mode']} build -> {s['out_dir']}", show_header=True)
    t.add_column("dataset")
    t.add_column("rows (store)", justify="right")
    t.add_column("rows written", justify="right")
    for name, n in s["rows"].items():
        t.add_row(name, f"{n:,}", f"{s['rows_written'].get(name, 0):,}")
    console.print(t)
    cs = s["censored_share"]
    q = {k: v for k, v in s["quarantined"].items() if k != "total"}
    console.print(
        f"window {s['window']['start']} .. {s['window']['end']} (watermark {s['watermark']}), "
        f"{s['lines_read']:,} order lines read, censored {cs['rows']:.2%} of rows / {cs['units']:.2%} of units, "
        f"quarantined {s['quarantined']['total']}" + (f" {q}" if q else "") + f", {s['seconds']:.1f} s",
        highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="features")
