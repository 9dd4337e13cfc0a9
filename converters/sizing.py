"""Output sizes from the converters' own shape-only plans: the one owner of "how big is X as target T".

`dshub info`, `dshub convert --dry-run` and `dshub plan` all print these bytes. For a checkpoint on disk the plan
reads its real headers; a model known only by its config.json (a catalog entry, a bare config) is passed in as
`dshub.checkpoint.shapes.shape_checkpoint`, the release layout of that config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dshub.checkpoint.reader import Checkpoint
from dshub.converters.base import get_converter
from dshub.converters.options import TargetOptions, build_options

PLANNING_OUT = Path("(planned)")  # plans are never executed here; the output directory is not used


@dataclass(frozen=True)
class PlannedBytes:
    """Bytes a conversion writes: in all, and attributable to each input tensor (the rest is headers/metadata)."""

    total: int
    by_tensor: dict[str, int]

    @property
    def overhead(self) -> int:
        return self.total - sum(self.by_tensor.values())


def planned_bytes(ckpt: Checkpoint, opts: TargetOptions) -> PlannedBytes:
    """Run the target's shape-only plan on `ckpt` (a real or a shape checkpoint); nothing is read but headers."""
    conv = get_converter(opts.target)
    conv.preflight(opts)
    plan = conv.plan(ckpt, opts)
    return PlannedBytes(plan.total_bytes, conv.source_bytes(plan))


def target_options(target: str, **values: Any) -> TargetOptions:
    """Options for a sizing plan (no output directory, no device work; a dry run, so what a real run would refuse
    for lack of a tool or an --imatrix is still priced)."""
    return build_options(target, **{"out": PLANNING_OUT, "device": "cpu", "dry_run": True, **values})
