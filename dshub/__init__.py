"""dshub: fetch, validate, convert and serve DeepSeek-family checkpoints.

The library's verbs live in `dshub.api` and are re-exported here lazily (importing `dshub.quant` or any other
sub-package does not pull in the whole tool): `dshub.convert(path, Int4Options(out=...))`, `dshub.checks(path)`,
`dshub.plan(Request(...))`, `dshub.summary(path)`, `dshub.download(repo)`, `dshub.synth(out)`.
"""
from __future__ import annotations

import importlib
from typing import Any

from dshub.constants import VERSION as __version__

# name -> module that defines it (the public API; see dshub.api)
_EXPORTS: dict[str, str] = {
    name: "dshub.api"
    for name in ("convert", "verify", "verify_files", "plan", "recipe", "info", "download", "synth", "options",
                 "Bf16Options", "Int4Options", "GGUFOptions", "ONNXOptions", "TargetOptions", "ConversionResult", "VerifyReport",
                 "HashReport", "Request", "RecipeOptions", "Plan", "DownloadPlan", "DownloadResult")
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dshub' has no attribute {name!r}")
