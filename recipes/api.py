"""Plan -> Launch -> files, and writing them atomically."""
from __future__ import annotations

import os
from pathlib import Path

from dshub.errors import OutputError, UsageError
from dshub.fsutil import atomic_open

from .engines import build_launch
from .launch import Launch, RecipeOptions
from .planner import Plan, Request, plan, require
from .render import RENDERERS

FORMATS: tuple[str, ...] = tuple(RENDERERS)
EXECUTABLE_SUFFIXES = (".sh",)


def make_recipe(req: Request, opts: RecipeOptions | None = None, fmt: str = "json") -> tuple[Launch, dict[str, str]]:
    """Plan the request (PlanRefused if nothing fits), build the engine's Launch and render it as `fmt`."""
    check_format(fmt)
    return render_recipe(plan(req), opts, fmt)


def check_format(fmt: str) -> None:
    if fmt not in RENDERERS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(RENDERERS)}")


def render_recipe(p: Plan, opts: RecipeOptions | None = None, fmt: str = "json") -> tuple[Launch, dict[str, str]]:
    """An existing plan (PlanRefused if nothing fits) -> the engine's Launch, rendered as `fmt`."""
    check_format(fmt)
    launch = build_launch(require(p), opts)
    return launch, RENDERERS[fmt](launch)


def write_recipe(files: dict[str, str], out: str | os.PathLike) -> list[Path]:
    """Write every file under `out` (temp name + fsync + rename); scripts become executable."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise OutputError(f"--out {root}: exists and is not a directory", path=str(root))
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(files.items()):
        path = root / name
        with atomic_open(path, "w") as f:
            f.write(text)
        if name.endswith(EXECUTABLE_SUFFIXES):
            path.chmod(0o755)
        written.append(path)
    return written
