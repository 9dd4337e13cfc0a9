"""Architecture specs: from config.json, every tensor a checkpoint must hold. Registry keyed by HF architecture."""
from __future__ import annotations

from typing import Any, Callable

from dshub.errors import UnsupportedArchitecture
from dshub.arch.spec import ArchSpec, TensorSpec, Role

SPEC_BUILDERS: dict[str, Callable[[dict[str, Any]], ArchSpec]] = {}


def register(*architectures: str) -> Callable:
    """Register an ArchSpec builder for HF `architectures` names."""

    def deco(fn: Callable[[dict[str, Any]], ArchSpec]) -> Callable[[dict[str, Any]], ArchSpec]:
        for a in architectures:
            SPEC_BUILDERS[a] = fn
        return fn

    return deco


def spec_for(config: dict[str, Any]) -> ArchSpec:
    """The ArchSpec for a config.json. Raises UnsupportedArchitecture listing the known ones."""
    archs = config.get("architectures") or []
    for a in archs:
        if a in SPEC_BUILDERS:
            return SPEC_BUILDERS[a](config)
    raise UnsupportedArchitecture(
        f"config.json: architectures {archs!r} not supported; known: {', '.join(sorted(SPEC_BUILDERS))}", path="config.json"
    )


from dshub.arch import deepseek_v3  # noqa: E402,F401  (registers)

__all__ = ["ArchSpec", "TensorSpec", "Role", "spec_for", "register", "SPEC_BUILDERS"]
