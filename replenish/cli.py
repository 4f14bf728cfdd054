"""``replenish``: one CLI for planners, data scientists and schedulers.

Expected failures (ReplenishError) print one line and exit 2; nothing a user can cause shows a traceback.
Heavy libraries are imported inside commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys

import click
import typer
from sqlalchemy.exc import SQLAlchemyError

from forecasting.errors import ReplenishError
from replenish import db_cmd
from replenish.common import err_console

app = typer.Typer(
    name="replenish",
    help="Demand forecasting and replenishment for Luckin Coffee USA stores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmd.app, name="db")


def _optional_modules() -> None:
    """Register commands of later stages when their modules exist (each stage owns its command module)."""
    import importlib

    for name in ("seed_cmd", "features_cmd", "training_cmd", "plan_cmd", "serving_cmd", "pos_cmd"):
        try:
            mod = importlib.import_module(f"replenish.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"replenish.{name}":
                continue
            raise
        mod.register(app)


_optional_modules()


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except ReplenishError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("[bold red]error:[/] aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        msg = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        err_console.print(f"[bold red]error:[/] database error: {msg}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]error:[/] interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
