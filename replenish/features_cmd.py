"""``replenish features build``: the feature store from the source database (see ``features/``)."""

from __future__ import annotations

from datetime import date

import typer

from forecasting.errors import ConfigError
from replenish.common import console, emit_json, err_console, progress, settings, source

app = typer.Typer(help="Feature store: store x SKU x hour/day panels, materials, ireplenishment history.",
                  no_args_is_help=True)


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--until: not a date (YYYY-MM-DD): {value!r}") from None


@app.command("build")
def build(
    db: str = typer.Option(None, "--db", help="Source database URL (default: configs/, or $REPLENISH_DB_URL)."),
    out: str = typer.Option(None, "--out", help="Feature store folder (default: features.out_dir)."),
    until: str = typer.Option(None, "--until", help="Last local date to include (default: last completed order)."),
    full: bool = typer.Option(False, "--full", help="Rebuild everything instead of extending from the watermark."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary object on stdout."),
    config: str = typer.Option(None, "--config", help="A YAML file merged over configs/default.yaml."),
    engine_opt: str = typer.Option(None, "--engine", help="local | dask (default: cluster.engine in configs/)."),
) -> None:
    """Build or extend the Parquet feature store (incremental by watermark; --full rebuilds)."""
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
