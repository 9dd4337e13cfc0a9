"""`dshub` console entry point: the typer app with every command module registered."""
from __future__ import annotations

from dshub.cli.app import app

# Each module registers its commands on `app` when imported.
from dshub.cli import checkpoint  # noqa: E402,F401  synth, info, verify
from dshub.cli import download  # noqa: E402,F401  download (+ verify --hashes helpers)
from dshub.cli import convert  # noqa: E402,F401  convert
from dshub.cli import recipes  # noqa: E402,F401  plan, recipe

__all__ = ["app", "main"]


def main() -> None:
    app()

