"""Input checks every GGUF quantizer makes before touching a tensor: shape, dtype, row length, finite values, and the
importance matrix's length. One wording for every backend (torch, ggml, native), so errors read the same whichever
computes."""
from __future__ import annotations

import math

import torch


def check_rows(x: torch.Tensor, name: str, block: int, what: str = "block size") -> None:
    """A 2-D float32 tensor whose rows are whole blocks."""
    if x.dim() != 2 or x.dtype != torch.float32:
        raise ValueError(f"{name}: expected a 2-D float32 tensor, got {tuple(x.shape)} {x.dtype}")
    if x.shape[1] % block:
        raise ValueError(f"{name}: row length {x.shape[1]} is not a multiple of the {what} {block}")


def check_finite(x: torch.Tensor, name: str, row0: int = 0) -> None:
    """Refuse nan/inf, naming the first one's row (offset by `row0`) and column.

    A float32 sum is nan or inf whenever any value is, and costs one vectorized pass; only then (or when finite values
    overflow the sum) is the exact elementwise scan run.
    """
    if x.numel() == 0 or math.isfinite(float(x.sum())):
        return
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    r, c = (~finite).nonzero()[0].tolist()
    raise ValueError(f"{name}: non-finite value {x[r, c].item()} at row {row0 + r}, column {c}")


def check_imatrix(imatrix: torch.Tensor | None, name: str, cols: int) -> None:
    """One finite importance value per column, when one is given."""
    if imatrix is None:
        return
    if imatrix.dim() != 1 or imatrix.numel() != cols:
        raise ValueError(f"{name}: importance matrix has {imatrix.numel()} values, expected {cols} (one per column)")
    if not bool(torch.isfinite(imatrix).all()):
        raise ValueError(f"{name}: importance matrix has non-finite values")
