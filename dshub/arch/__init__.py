"""Model families: from config.json, every fact a command needs (see family.py for the contract).

The import list at the bottom is the one place a family is registered: adding a family is one module plus its line
here, plus its tests.
"""
from __future__ import annotations

from dshub.arch.family import FAMILIES, Family, family_for, families, register, spec_for
from dshub.arch.spec import ArchSpec, Role, TensorSpec

from dshub.arch import deepseek_v3, deepseek_v32, deepseek_v4, llama, qwen2  # noqa: E402,F401  (register their families)

__all__ = ["ArchSpec", "TensorSpec", "Role", "Family", "FAMILIES", "family_for", "families", "spec_for", "register"]
