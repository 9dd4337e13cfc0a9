"""The Python API: the CLI's verbs as typed functions. Each command of `dshub` parses its flags, calls one of these
and prints the result; calling them from Python does the same work with the same checks and errors.

    import dshub
    dshub.synth("tiny")
    report = dshub.checks("tiny")                                   # VerifyReport
    result = dshub.convert("tiny", dshub.Int4Options(out="tiny-int4", group_size=64))   # ConversionResult
    p = dshub.plan(dshub.Request("deepseek-v3", engine="sglang"))    # Plan
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, overload

from dshub.checkpoint.synth import write_synthetic
from dshub.converters import Bf16Options, GGUFOptions, Int4Options, ONNXOptions, TargetOptions, build_options, run_conversion
from dshub.converters.base import ConversionResult
from dshub.hub.download import DEFAULT_WORKERS, DownloadPlan, DownloadResult
from dshub.hub.download import download as _download
from dshub.hub.hash_check import HashReport, verify_hashes
from dshub.summary import checkpoint_info
from dshub.recipes import Plan, RecipeOptions, Request, make_recipe
from dshub.recipes import plan as _plan
from dshub.recipes.models import hub_id_for
from dshub.checks import VerifyReport
from dshub.checks import verify as _verify

__all__ = ["convert", "verify", "verify_files", "plan", "recipe", "info", "download", "synth", "options",
           "Bf16Options", "Int4Options", "GGUFOptions", "ONNXOptions", "TargetOptions", "ConversionResult", "VerifyReport",
           "HashReport", "Request", "RecipeOptions", "Plan", "DownloadPlan", "DownloadResult"]


def options(target: str, **values: Any) -> TargetOptions:
    """Typed options for `--to target` from keyword values, e.g. `options("gguf", out="o", quant="Q4_K_M")`."""
    return build_options(target, **values)


def convert(path: str | Path, opts: TargetOptions, *, progress: bool | None = None) -> ConversionResult:
    """`dshub convert`: stream `path` into `opts.out` as `opts.target` (resumes; `opts.dry_run` only plans)."""
    return run_conversion(path, opts, progress=progress)


def verify(path: str | Path, *, deep: bool = False) -> VerifyReport:
    """`dshub verify`: structural checks of a checkpoint directory, GGUF file or split set (never raises for a bad one)."""
    return _verify(path, deep=deep)


def verify_files(path: str | Path, *, against_hub: str | None = None, workers: int | None = None) -> HashReport:
    """`dshub verify --hashes` / `--against-hub`: every file's size and digest against the manifest or the hub."""
    return verify_hashes(path, against_hub=against_hub, workers=workers, progress=False)


def plan(request: Request) -> Plan:
    """`dshub plan`: every layout of the engine for the model, sized; refused ones say why."""
    return _plan(request)


def recipe(request: Request, opts: RecipeOptions | None = None, fmt: str = "json") -> dict[str, str]:
    """`dshub recipe`: the rendered files (name -> text) of the chosen layout's launch configuration."""
    return make_recipe(request, opts, fmt)[1]


def info(path: str | Path) -> dict[str, Any]:
    """`dshub info`: architecture, parameters, encoding, and each target's output bytes (from its plan)."""
    return checkpoint_info(path)


@overload
def download(repo_id: str, *, dry_run: Literal[True], **kwargs: Any) -> DownloadPlan: ...
@overload
def download(repo_id: str, *, dry_run: Literal[False] = ..., **kwargs: Any) -> DownloadResult: ...
def download(repo_id: str, *, dry_run: bool = False, workers: int = DEFAULT_WORKERS, **kwargs: Any) -> DownloadResult | DownloadPlan:
    """`dshub download`: the plan when `dry_run`, else the verified download's result. `repo_id` may be a catalog
    name (deepseek-v4-flash)."""
    return _download(hub_id_for(repo_id), dry_run=dry_run, workers=workers, **kwargs)


def synth(out: str | Path, preset: str = "tiny", seed: int = 0) -> dict[str, Any]:
    """`dshub synth`: a small synthetic checkpoint with the real layout."""
    return write_synthetic(out, preset, seed)
