"""Bit-level comparison of a kernel's output with its torch reference (used by tests and bench)."""
from __future__ import annotations

import os

import torch

from dshub.quant.device import torch_device

INT_VIEW: dict[torch.dtype, torch.dtype] = {
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float64: torch.int64,
}


def prepare_interpreter() -> str | None:
    """Without a GPU, switch Triton to its CPU interpreter (must happen before `import triton`).

    Returns None when kernels can run here, or why not: triton missing, or imported earlier in this
    process in compiled mode (its own @jit helpers such as tl.max then fail inside interpreted kernels;
    set TRITON_INTERPRET=1 before anything imports triton, e.g. at the top of conftest.py)."""
    if torch.cuda.is_available():
        return None
    os.environ.setdefault("TRITON_INTERPRET", "1")
    try:
        import triton.language as tl
    except ImportError:
        return "triton is not installed"
    if type(tl.max).__name__ != "InterpretedFunction":
        return "triton was imported in compiled mode before TRITON_INTERPRET=1 was set, and there is no GPU"
    return None


def kernel_device() -> torch.device:
    """Where kernel inputs must live: the GPU, or the CPU under the interpreter."""
    return torch_device("cuda")


def bit_mismatch(got: torch.Tensor, want: torch.Tensor) -> str | None:
    """None when both tensors have the same dtype, shape and bits (any NaN matches any NaN); else why not."""
    if got.dtype != want.dtype or got.shape != want.shape:
        return f"dtype/shape {got.dtype}{tuple(got.shape)} != {want.dtype}{tuple(want.shape)}"
    got, want = got.detach().cpu(), want.detach().cpu()
    view = INT_VIEW.get(got.dtype)
    if view is None:
        diff = got.ne(want)
    else:
        nan_g, nan_w = torch.isnan(got), torch.isnan(want)
        diff = nan_g.ne(nan_w) | (~nan_g & got.view(view).ne(want.view(view)))
    if not bool(diff.any()):
        return None
    idx = tuple(int(i) for i in diff.nonzero()[0])
    return f"{int(diff.sum())} of {diff.numel()} elements differ; first at {idx}: {got[idx].item()!r} != {want[idx].item()!r}"
