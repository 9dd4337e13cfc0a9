"""`--codec-backend`: which CPU implementation computes each codec, resolved once per run into a chain.

The chain is the backends to try, fastest first, joined by "+" (e.g. "native+ggml"); a codec comes from the first one
that implements it, else from the torch reference (dshub.quant.registry.get_codec). Every backend gives the torch
reference's bytes:
- `torch`: the reference (vectorized torch, fused kernels where torch.compile works);
- `ggml`: llama.cpp's own quantizers through ctypes (ggml.py); the only one with the IQ and ternary types;
- `native`: dshub's C kernels for Q2_K/Q4_K/Q5_K/Q6_K without an importance matrix (native.py), built on first use;
- `auto`: every backend that loads here, native first; a named one is followed by the slower ones that load
  (`native` -> "native+ggml"), never by a faster one.
"""
from __future__ import annotations

import sys
from typing import Callable

from dshub.quant.gguf import ggml, native
from dshub.quant.registry import BackendUnavailable, CPU_BACKENDS

BACKENDS = ("auto", *CPU_BACKENDS)
ACCELERATED = {"native": native.unavailable_reason, "ggml": ggml.unavailable_reason}  # fastest first
HINT = {"native": "use --codec-backend auto", "ggml": "use --codec-backend torch"}


class BackendNameError(BackendUnavailable, ValueError):
    """`--codec-backend` names no known backend (a usage error)."""


def _stderr_note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def resolve_backend(requested: str, note: Callable[[str], None] | None = _stderr_note) -> str:
    """The backend chain for `--codec-backend requested`.

    A named backend that cannot be used raises BackendUnavailable (saying why); `auto` takes every one that loads and
    calls `note` with the reason for each that does not (None: silently); "torch" when none does.
    """
    if requested not in BACKENDS:
        raise BackendNameError(f"--codec-backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if requested == "torch":
        return "torch"
    reasons = {name: probe() for name, probe in ACCELERATED.items()}
    if requested != "auto":
        if reasons[requested] is not None:
            raise BackendUnavailable(f"--codec-backend {requested}: {reasons[requested]}; {HINT[requested]}")
        # what a named backend lacks comes from the next faster one that loads (native has only four types)
        after = list(ACCELERATED)[list(ACCELERATED).index(requested) + 1:]
        return "+".join([requested, *(n for n in after if reasons[n] is None)])
    chain = [n for n, why in reasons.items() if why is None]
    if note is not None:
        for name, why in reasons.items():
            if why is not None:
                then = "+".join(chain) if chain else "the torch reference"
                note(f"--codec-backend auto: {name} is not available ({why}); quantizing with {then}")
    return "+".join(chain) or "torch"


def default_chain() -> str:
    """`auto`'s chain, without notes: what converters that have no `--codec-backend` option (BF16, INT4) use for the
    CPU kernels they share with GGUF (block-FP8 dequantization), the same bytes whichever computes."""
    return resolve_backend("auto", note=None)
