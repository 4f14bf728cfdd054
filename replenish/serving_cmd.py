"""``replenish serve [--port N]``: the BentoML API; ``replenish serve import-model``: champion -> BentoML store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from replenish.common import CONFIG, console, emit_json, example, json_flag, settings

app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring


@app.callback(epilog=example("replenish serve", "replenish serve --host 0.0.0.0 --port 8080",
                             "REPLENISH_API_TOKEN=secret replenish serve", "replenish serve import-model"))
def serve(
    ctx: typer.Context,
    port: int = typer.Option(None, "--port", min=1, max=65535, metavar="PORT",
                             help="TCP port, 1-65535 (default: serving.port, 3000)."),
    host: str = typer.Option(None, "--host", metavar="ADDRESS",
                             help="Interface to listen on (default: serving.host, 127.0.0.1; 0.0.0.0 for all)."),
    config: str = CONFIG,
) -> None:
    """Start the forecast and replenishment API for the ordering system (BentoML); ready (GET /readyz) once the
    champion's forecasts are loaded. OpenAPI document at /docs.json; with $REPLENISH_API_TOKEN set, requests need
    `Authorization: Bearer <token>`."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = settings(config)  # fail fast on a bad configuration, before BentoML starts
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    if config:
        env["REPLENISH_CONFIG"] = str(Path(config).resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    bentoml = Path(sys.executable).with_name("bentoml")
    args = [str(bentoml), "serve", "serving.service:Replenishment", "--host", host or cfg.serving.host,
            "--port", str(port or cfg.serving.port)]
    os.chdir(root)
    os.execve(args[0], args, env)  # replace this process: signals reach BentoML directly


@app.command("import-model", epilog=example("replenish serve import-model", "replenish serve import-model "
                                                                          "--version 3 --force"))
def import_model(
    version: int = typer.Option(None, "--version", min=1, metavar="N",
                                help="Registered model version (default: the champion)."),
    force: bool = typer.Option(False, "--force", help="Replace the BentoML model if already imported."),
    as_json: bool = json_flag("the import result"),
    config: str = CONFIG,
) -> None:
    """Copy the champion (MLflow registry) and its newest forecast cache into the BentoML model store, so
    `bentoml build` makes a self-contained Bento."""
    from serving.bundle import import_champion

    out = import_champion(settings(config), version, force)
    if as_json:
        emit_json(out)
    elif out["imported"]:
        console.print(f"imported {out['tag']} (forecasts of {out['data_date']}) into the BentoML store")
    else:
        console.print(f"{out['tag']}: {out['reason']}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="serve")
