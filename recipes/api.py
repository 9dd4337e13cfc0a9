"""Plan -> Launch -> files, and writing them atomically."""
from __future__ import annotations

import json
import os
from pathlib import Path

from dshub.errors import OutputError, UsageError
from dshub.fsutil import atomic_open, write_json_atomic

from dshub.recipes.engines import build_launch
from dshub.recipes.launch import Launch, RecipeOptions
from dshub.recipes.planner import Plan, Request, plan, require
from dshub.recipes.render import RENDERERS

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
    return launch, RENDERERS.get(fmt)(launch)


RECIPE_LIST = ".dshub-recipe.json"  # the files the last recipe written into a directory consists of


def write_recipe(files: dict[str, str], out: str | os.PathLike) -> list[Path]:
    """Write every file under `out` (temp name + fsync + rename); scripts become executable.

    Files an earlier recipe wrote into the same directory and this one does not (e.g. `node3.sh` of a 4-node
    recipe, rewritten for 2 nodes) are removed, so the directory never mixes two recipes."""
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise OutputError("exists and is not a directory", path=str(root), show_path=f"--out {root}")
    root.mkdir(parents=True, exist_ok=True)
    listing = root / RECIPE_LIST
    try:
        previous = json.loads(listing.read_text()) if listing.exists() else []
    except (UnicodeDecodeError, json.JSONDecodeError):
        previous = []
    for name in previous if isinstance(previous, list) else []:
        if isinstance(name, str) and name not in files and "/" not in name and not name.startswith("."):
            (root / name).unlink(missing_ok=True)
    write_json_atomic(listing, sorted(files))
    written = []
    for name, text in sorted(files.items()):
        path = root / name
        with atomic_open(path, "w") as f:
            f.write(text)
        if name.endswith(EXECUTABLE_SUFFIXES):
            path.chmod(0o755)
        written.append(path)
    return written
