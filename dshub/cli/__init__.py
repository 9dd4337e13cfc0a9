"""`dshub` console entry point: the typer app and every command, registered here in the order `--help` lists them.

One module per command group (checkpoint: synth/info/verify; download; convert; recipes: plan/recipe). Command functions
parse, call one library function and print; they never catch: failures rise to the app's one catch
(`dshub.cli.app.DshubGroup`), which maps them to a message and an exit code through `dshub.cli.error_table.ERRORS`.
"""
from __future__ import annotations

from dshub.cli import checkpoint, convert, download, recipes, run
from dshub.cli.app import DshubCommand, app
from dshub.cli.examples import epilog

COMMANDS = (
    ("synth", checkpoint.synth),
    ("info", checkpoint.info),
    ("verify", checkpoint.verify),
    ("download", download.download),
    ("convert", convert.convert),
    ("plan", recipes.plan),
    ("recipe", recipes.recipe),
    ("run", run.run),
)
for _name, _command in COMMANDS:
    app.command(_name, cls=DshubCommand, epilog=epilog(_name))(_command)

__all__ = ["COMMANDS", "app", "main"]


def main() -> None:
    """The console script `dshub` (and `python -m dshub.cli`)."""
    app()
