"""The typer app. Every command runs inside its group's `invoke`, where the CLI's one catch sits (`error_table`)."""
from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from dshub.cli.error_table import handle
from dshub.cli.output import start_run
from dshub.constants import VERSION

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


def quiet_flags(params: list[Any]) -> list[Any]:
    """On/off flags show no value placeholder in --help (typer would print `<bool>`): a flag takes no value."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    return params


class DshubCommand(TyperCommand):
    """Every dshub command: help without `<bool>` placeholders (its epilog is the Examples block)."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return quiet_flags(super().get_params(ctx))


class DshubGroup(TyperGroup):
    """typer's group, with the one top-level catch around the command it dispatches to.

    The catch sits here rather than around `app()` so that the console script and in-process runs (typer's CliRunner,
    which calls the group directly) take the same path. typer's own exceptions (`typer.Exit`, usage errors) pass
    through to typer, which prints them and exits as it always has (2 for usage)."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return quiet_flags(super().get_params(ctx))

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """The group's own options; `--json` anywhere before `--` is noted first (a usage error still owes JSON)."""
        start_run(args)
        try:
            return super().parse_args(ctx, args)
        except BaseException as e:  # noqa: BLE001 - a usage error of the group itself (`dshub --bogus --json`)
            handle(e)
            raise

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BaseException as e:  # noqa: BLE001 - the table decides; what it does not know is re-raised
            code = handle(e)
            if code is None:
                raise
            raise typer.Exit(code) from None


app = typer.Typer(
    name="dshub",
    cls=DshubGroup,
    help="Fetch, validate, convert and serve DeepSeek-family checkpoints.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    context_settings=HELP_OPTIONS,
    pretty_exceptions_enable=False,
)


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"dshub {VERSION}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", "-V", is_eager=True, callback=print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Fetch, validate, convert and serve DeepSeek-family checkpoints."""
