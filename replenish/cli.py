"""``replenish``: one CLI for planners, data scientists and schedulers.

Every failure a user can cause is handled here, once, at the command-line boundary: usage errors the parser catches
(unknown command or option, missing or malformed value, out-of-range number) and the project's own errors
(ReplenishError) print one line and exit 2; ``replenish`` alone prints the help and exits 0. Library warnings,
MLflow's progress bars and its informational log lines are silenced here too (``-W`` / ``PYTHONWARNINGS`` or
``REPLENISH_DEBUG=1`` bring them back), so a normal run prints only what the commands say.
Heavy libraries are imported inside commands so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager

import typer
from sqlalchemy.exc import SQLAlchemyError

from forecasting.errors import ReplenishError
from replenish import db_cmd
from replenish.common import err_console, example

try:  # typer >= 0.16 vendors click: its usage errors are typer._click's classes, not click's
    from typer._click import exceptions as cx
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as cx

PROG = "replenish"

app = typer.Typer(
    name=PROG,
    help="Demand forecasting and replenishment for Luckin Coffee USA stores: daily order proposals per store and "
    "material, the models behind them, and the API the ordering system calls.",
    epilog=example("replenish seed --db sqlite:///data/luckin.db", "replenish features build",
                   "replenish train", "replenish plan --date 2026-02-13"),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmd.app, name="db")


def _version(value: bool) -> None:
    if value:
        from replenish.about import describe

        for line in describe():
            typer.echo(line)
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print the version, the model and the data it would use, and exit."),
) -> None:
    """Demand forecasting and replenishment for Luckin Coffee USA stores."""


def _optional_modules() -> None:
    """Register commands of later stages when their modules exist (each stage owns its command module)."""
    import importlib

    for name in ("seed_cmd", "features_cmd", "training_cmd", "plan_cmd", "serving_cmd", "pos_cmd", "mlflow_cmd"):
        try:
            mod = importlib.import_module(f"replenish.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"replenish.{name}":
                continue
            raise
        mod.register(app)


_optional_modules()


def command():
    """The click command tree (typer builds it on each call): flags get no metavar (``--json``, not ``<bool>``), and
    command lists show each command's first sentence on one line (typer's rich mode keeps docstring line breaks)."""
    cmd = typer.main.get_command(app)

    def walk(c) -> None:
        if c.help and not c.short_help:
            first = " ".join(c.help.split("\n\n")[0].split())
            c.short_help = first.split(". ")[0].rstrip(".") + "."
        helper = c.get_help_option(c.context_class(c))  # created lazily, then cached on the command
        for p in [*c.params, *([helper] if helper is not None else [])]:
            if getattr(p, "is_flag", False):
                p.metavar = ""
            elif p.param_type_name == "argument" and p.metavar:  # its metavar names it: no "<str>" beside it
                p.display_type_rich = lambda ctx: None
        for sub in getattr(c, "commands", {}).values():
            walk(sub)

    walk(cmd)
    return cmd


QUIET_ENV = {
    "PYTHONWARNINGS": "ignore",  # the same for subprocesses the commands start
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "ERROR",  # MLflow sets its own level when it is imported
    "TQDM_DISABLE": "1",
    "LIGHTGBM_VERBOSITY": "-1",
}
QUIET_LOGGERS = ("mlflow", "alembic", "optuna", "distributed", "fugue", "urllib3")


@contextmanager
def quiet_libraries():
    """No library warnings, progress bars or info logs in a normal run (the commands print what matters); undone
    on the way out, so a test that calls ``main`` in-process keeps its own warning and logging set-up."""
    if os.environ.get("REPLENISH_DEBUG") or sys.warnoptions:
        yield
        return
    env = {k: os.environ.get(k) for k in QUIET_ENV}
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, v in QUIET_ENV.items():
            os.environ.setdefault(k, v)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def one_line(msg: str) -> str:
    """Collapse a message to one line (a usage error never spills a usage block or a traceback)."""
    return " ".join(str(msg).split())


def _fail(msg: str, code: int = 2) -> None:
    from rich.markup import escape  # the message is plain text: "[...]" in it must print, not style

    err_console.print(f"[bold red]error:[/] {escape(one_line(msg))}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage(exc: cx.UsageError) -> str:
    """``error: <what> (see `replenish <command> --help`)``: the option is named by click's message."""
    path = exc.ctx.command_path if exc.ctx is not None else PROG
    return f"{one_line(exc.format_message())} (see `{path} --help`)"


def main(argv: list[str] | None = None) -> None:
    with quiet_libraries():
        _main(argv)


def _main(argv: list[str] | None) -> None:
    try:
        rc = command().main(args=argv, prog_name=PROG, standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer.Exit(code) comes back as a return value without standalone mode
            sys.exit(rc)
    except cx.NoArgsIsHelpError as exc:  # `replenish` (or a group) alone: the help is the answer, not an error
        typer.echo(exc.format_message())
        sys.exit(0)
    except cx.UsageError as exc:
        _fail(_usage(exc), 2)
    except ReplenishError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except typer.TyperException as exc:  # other click exceptions (e.g. a file that cannot be opened)
        _fail(exc.format_message(), getattr(exc, "exit_code", 2) or 2)
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        msg = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        _fail(f"database error: {msg}", 2)


if __name__ == "__main__":
    main()
