"""`dshub` console entry point: the typer app with every command module registered."""
from __future__ import annotations

from .cli_app import app

# Each module registers its commands on `app` when imported.
from . import cli_core  # noqa: E402,F401  synth, info, verify
from . import cli_hub  # noqa: E402,F401  download (+ verify --hashes helpers)
from . import cli_convert  # noqa: E402,F401  convert
from . import cli_recipes  # noqa: E402,F401  plan, recipe

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
