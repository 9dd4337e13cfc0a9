"""What a GGUF run's planned types require: which CPU quantizers compute them (`--codec-backend`), and where llama.cpp
insists on an importance matrix.

The backend is resolved once, at planning, into a chain (quant/backends.py): `torch` (the reference), `ggml`
(llama.cpp's own C quantizers, the same bytes), `native` (dshub's C K-quant kernels, the same bytes) or `auto` (every
one that loads, native first). Types only ggml produces (IQ*, TQ*) make ggml a requirement; a dry run
(sizing: `info`, `plan`) still prices them without the library. Refusals name the tensor, before any work.
"""
from __future__ import annotations

import sys
from typing import Iterable

from dshub.errors import DeviceError, PolicyError, UsageError
from dshub.quant.gguf import ggml
from dshub.quant.backends import resolve_backend
from dshub.quant.registry import BackendUnavailable, is_registered

from dshub.converters.gguf.imatrix import load_imatrix, slices_for
from dshub.converters.gguf.tensors import PlannedTensor

# llama-quant.cpp `tensor_requires_imatrix`: llama-quantize refuses these types without importance data ("the result
# will be garbage"), except for token_embd and output; ggml itself asserts one for ggml.NEEDS_IMATRIX, output included.
LLAMA_NEEDS_IMATRIX = frozenset({"IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"})
EXEMPT = ("token_embd.weight", "output.weight")


def ggml_only(planned: Iterable[PlannedTensor]) -> list[PlannedTensor]:
    """Planned tensors whose type has no torch codec (only the ggml backend writes them)."""
    return [p for p in planned if not is_registered(f"gguf_{p.info.ggml_type}", "cpu")]


def choose_backend(requested: str, planned: list[PlannedTensor], dry_run: bool) -> str:
    """The CPU backend chain for this run ("torch", "ggml", "native+ggml", ...); UsageError / DeviceError when the plan cannot be written."""
    need = ggml_only(planned)
    if need and requested == "torch":
        p = need[0]
        raise UsageError(f"--codec-backend torch cannot write {p.info.ggml_type} (tensor {p.info.name}): only ggml's "
                         "quantizers produce it; use --codec-backend auto or ggml")
    if need and (reason := ggml.unavailable_reason()) is not None:
        if dry_run:  # pricing needs no quantizer
            return "unavailable"
        p = need[0]
        raise DeviceError(f"{p.info.ggml_type} (tensor {p.info.name}) is written by ggml's quantizers only, which "
                          f"cannot be used here: {reason}")
    try:
        return resolve_backend(requested, note=None if dry_run else lambda m: print(f"note: {m}", file=sys.stderr))
    except BackendUnavailable as e:
        raise (UsageError if isinstance(e, ValueError) else DeviceError)(str(e)) from None


def needs_imatrix(name: str, type_name: str) -> bool:
    """Whether llama.cpp refuses (or ggml asserts) to quantize tensor `name` as `type_name` without importance data."""
    return type_name in ggml.NEEDS_IMATRIX or (type_name in LLAMA_NEEDS_IMATRIX and name not in EXEMPT)


def imatrix_missing(planned: list[PlannedTensor], imatrix: str | None) -> list[PlannedTensor]:
    """Planned tensors that need an importance matrix and get none (no --imatrix, or no entry in it)."""
    data = load_imatrix(imatrix) if imatrix else None
    return [p for p in planned if needs_imatrix(p.info.name, p.info.ggml_type)
            and (data is None or slices_for(data, p.info.name, p.info.shape) is None)]


def require_imatrix(planned: list[PlannedTensor], imatrix: str | None) -> None:
    """Refuse, naming the first tensor, when a type llama.cpp only quantizes with an importance matrix gets none."""
    missing = imatrix_missing(planned, imatrix)
    if not missing:
        return
    p = missing[0]
    why = "the imatrix has no entry for it" if imatrix else "no --imatrix was given"
    raise PolicyError(f"gets {p.info.ggml_type}, which llama.cpp only quantizes with an importance matrix (without one "
                      f"the result is garbage), and {why}; {len(missing)} tensor(s) affected. Pass --imatrix FILE "
                      "computed for this model (llama-imatrix), or choose a type of 3 bits or more",
                      path=imatrix, show_path=f"--imatrix {imatrix}" if imatrix else "", tensor=p.info.name)
