"""Device resolution for codecs: auto | cpu | cuda, decided before any work starts.

`cuda` needs a visible GPU, triton, and enough free memory for the largest tensor's working set;
otherwise it fails with a reason. `auto` takes the GPU when `cuda` would succeed and otherwise
falls back to the CPU, saying why on stderr. Under TRITON_INTERPRET=1, `--device cuda` means Triton's
CPU interpreter (how CI runs the kernels without a GPU; kernels then take CPU tensors); `auto` never
picks it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch

DEVICES = ("auto", "cpu", "cuda")
# Device bytes per byte of the largest tensor: its input and output, plus the prefetched next pair.
WORKING_FACTOR = 4
GIB = 2**30


class DeviceUnavailable(RuntimeError):
    """The requested device cannot run the conversion (quant imports nothing of dshub; callers map this)."""


class DeviceNameError(DeviceUnavailable, ValueError):
    """`--device` names no known device (a usage error)."""


@dataclass(frozen=True)
class CudaState:
    """What the GPU check found. `reason` says why it is not usable; `name`/`free_bytes` describe it when it is."""

    usable: bool
    reason: str = ""
    name: str = ""
    free_bytes: int = 0
    total_bytes: int = 0
    interpreter: bool = False  # Triton's CPU interpreter: taken for --device cuda, never by auto


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")


def map_tensors(x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`x` with `fn` applied to every tensor inside tuples, lists, dicts and dataclasses (other values kept)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return type(x)(map_tensors(v, fn) for v in x)
    if isinstance(x, dict):
        return {k: map_tensors(v, fn) for k, v in x.items()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: map_tensors(getattr(x, f.name), fn) for f in dataclasses.fields(x) if f.init})
    return x


def tensors_in(x: Any) -> list[torch.Tensor]:
    """Every tensor inside `x` (as `map_tensors` walks it), in a fixed order."""
    found: list[torch.Tensor] = []
    map_tensors(x, lambda t: found.append(t) or t)
    return found


def torch_device(kind: str) -> torch.device:
    """The torch device that tensors for codecs of device kind `kind` must live on."""
    return torch.device("cuda" if kind == "cuda" and not interpreting() and torch.cuda.is_available() else "cpu")


def triton_installed() -> bool:
    """True when the `triton` package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def probe_cuda() -> CudaState:
    """Check, without allocating anything, whether the codecs' "cuda" kernels can run here."""
    if not triton_installed():
        return CudaState(False, "triton is not installed (pip install 'dshub[gpu]')")
    if interpreting():
        return CudaState(True, name="Triton interpreter on the CPU (TRITON_INTERPRET=1)", free_bytes=sys.maxsize, interpreter=True)
    if not torch.backends.cuda.is_built():
        return CudaState(False, f"this torch build ({torch.__version__}) has no CUDA support")
    try:
        if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            return CudaState(False, "no CUDA GPU is visible" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""))
        free, total = torch.cuda.mem_get_info()
        return CudaState(True, name=torch.cuda.get_device_name(), free_bytes=free, total_bytes=total)
    except Exception as e:  # a broken driver is "not usable", not a crash
        return CudaState(False, f"CUDA failed to initialize: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def _stderr_note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def resolve_device(
    requested: str,
    *,
    largest_bytes: int = 0,
    probe: Callable[[], CudaState] = probe_cuda,
    note: Callable[[str], None] = _stderr_note,
) -> str:
    """Return the codec device kind, "cpu" or "cuda", for `--device requested`.

    `largest_bytes` is the size of the largest tensor the run moves through the GPU (its output
    dtype); the GPU needs WORKING_FACTOR times that free. `cuda` raises DeviceUnavailable when it
    cannot be used; `auto` falls back to "cpu" and calls `note` with the reason.
    """
    if requested not in DEVICES:
        raise DeviceNameError(f"--device {requested!r}: choose one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    state = probe()
    reason = state.reason
    need = WORKING_FACTOR * largest_bytes
    if state.usable and state.interpreter and requested == "auto":
        reason = "TRITON_INTERPRET=1 runs the kernels in Triton's CPU interpreter, which only --device cuda selects"
    elif state.usable and need > state.free_bytes:
        reason = (f"{state.name} has {state.free_bytes / GIB:.1f} GiB free; the largest tensor "
                  f"({largest_bytes / GIB:.2f} GiB) needs about {need / GIB:.1f} GiB of working memory")
    elif state.usable:
        return "cuda"
    if requested == "cuda":
        raise DeviceUnavailable(f"--device cuda: {reason}; use --device cpu")
    note(f"--device auto: {reason}; converting on the CPU")
    return "cpu"
