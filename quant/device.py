"""Device resolution for codecs: auto | cpu | cuda."""
from __future__ import annotations

import sys

import torch

DEVICES = ("auto", "cpu", "cuda")


class DeviceUnavailable(RuntimeError):
    """The requested device cannot run the conversion (quant imports nothing of dshub; the CLI maps this)."""


def cuda_usable() -> bool:
    try:
        return torch.cuda.is_available() and torch.cuda.device_count() > 0
    except Exception:  # a broken driver install is "not usable", not a crash
        return False


def resolve_device(requested: str, *, largest_bytes: int = 0) -> str:
    """Return "cpu" or "cuda". `cuda` without a usable GPU (or too little memory) fails before any work starts."""
    if requested not in DEVICES:
        raise DeviceUnavailable(f"--device {requested!r}: choose one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    if not cuda_usable():
        if requested == "cuda":
            raise DeviceUnavailable("--device cuda: no usable CUDA GPU is visible (torch.cuda.is_available() is False); use --device cpu")
        return "cpu"
    free, _total = torch.cuda.mem_get_info()
    if largest_bytes and free < 4 * largest_bytes:
        msg = f"GPU has {free / 2**30:.1f} GiB free, the largest output needs about {4 * largest_bytes / 2**30:.1f} GiB of working memory"
        if requested == "cuda":
            raise DeviceUnavailable(f"--device cuda: {msg}")
        print(f"note: {msg}; converting on the CPU", file=sys.stderr)
        return "cpu"
    return "cuda"
