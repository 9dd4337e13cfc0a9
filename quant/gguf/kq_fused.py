"""One make_qkx2 / make_qx candidate as a single fused CPU kernel (torch.compile / Inductor), same bits as eager.

The eager search makes ~11 full passes over memory per candidate plus ~120 small dispatches for the sequential sums.
Inductor fuses the candidate's element-wise chain and the unrolled sequential sums (each sum stays a chain of
pointwise float32 additions in ggml's order, so nothing is reassociated). Inductor compiles with
`-ffp-contract=off -fno-unsafe-math-optimizations` (no FMA contraction, no reassociation, true division), which is
what bit-exactness needs; tests/quant/gguf/test_kquants.py checks the fused path against llama.cpp.

Used for large inputs when a C++ compiler is available; `DSHUB_KQUANT_COMPILE=0` turns it off. Any failure to
compile falls back to the eager path for the rest of the process (with one note on stderr).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable

import torch

MIN_ELEMENTS = 1 << 17  # below this the eager path is fast enough and no compilation is worth it
_lock = threading.Lock()
_ready: set[tuple] = set()
_compiled: dict[str, Callable[..., tuple[torch.Tensor, ...]]] = {}
_state: dict[str, bool] = {"disabled": os.environ.get("DSHUB_KQUANT_COMPILE", "1") == "0"}


def candidate(x: torch.Tensor, w: torch.Tensor, mn: torch.Tensor, rng: torch.Tensor, num: torch.Tensor, sum_w: torch.Tensor,
              sum_x: torch.Tensor, nmax: int, use_mad: bool) -> tuple[torch.Tensor, ...]:
    """(iscale, D, this_scale, this_min, error) of one make_qkx2 candidate, for `[n, S]` groups with current min `mn`."""
    isc = num / rng
    la = torch.clamp(torch.round((x - mn) * isc), 0, nmax)
    wl = w * la
    s_l = wl[0] + 0.0
    s_l2 = wl[0] * la[0] + 0.0
    s_xl = wl[0] * x[0] + 0.0
    for i in range(1, x.shape[0]):
        s_l = s_l + wl[i]
        s_l2 = s_l2 + wl[i] * la[i]
        s_xl = s_xl + wl[i] * x[i]
    D = sum_w * s_l2 - s_l * s_l
    ts = (sum_w * s_xl - sum_x * s_l) / D
    tm = (s_l2 * sum_x - s_l * s_xl) / D
    pos = tm > 0
    tm = torch.where(pos, torch.zeros_like(tm), tm)
    ts = torch.where(pos, s_xl / s_l2, ts)
    diff = la * ts + tm - x
    err = (diff.abs() if use_mad else diff * diff) * w
    cur = err[0] + 0.0
    for i in range(1, x.shape[0]):
        cur = cur + err[i]
    return isc, D, ts, tm, cur


def qx_candidate(x: torch.Tensor, w: torch.Tensor, wx: torch.Tensor, mx: torch.Tensor, num: torch.Tensor,
                 nmax: int) -> tuple[torch.Tensor, ...]:
    """(iscale, Σw·x·l, Σw·l²) of one make_qx_quants candidate, for `[n, S]` groups with signed max `mx`."""
    isc = num / mx
    l = torch.clamp(torch.round(x * isc), -nmax, nmax - 1)
    sumlx = wx[0] * l[0] + 0.0
    suml2 = w[0] * l[0] * l[0] + 0.0
    for i in range(1, x.shape[0]):
        sumlx = sumlx + wx[i] * l[i]
        suml2 = suml2 + w[i] * l[i] * l[i]
    return isc, sumlx, suml2


KERNELS: dict[str, Callable[..., tuple[torch.Tensor, ...]]] = {"qkx2": candidate, "qx": qx_candidate}


_PLAIN_CALL = "kernel({}); Py_RETURN_NONE;"
_NOGIL_CALL = ("{{ auto run_ = [&](auto... a) {{ Py_BEGIN_ALLOW_THREADS kernel(a...); Py_END_ALLOW_THREADS }}; "
               "run_({}); }} Py_RETURN_NONE;")


def _release_gil_in_kernels() -> None:
    """Make Inductor's generated CPU kernel bindings release the GIL while the kernel runs (arguments are parsed
    first, with the GIL): the converter quantizes chunks on several threads, and a kernel that holds the GIL
    serializes them. Pure C++ kernels touch no Python object, so this is safe; left alone if torch changes."""
    try:
        from torch._inductor.codecache import CppPythonBindingsCodeCache as bindings
    except ImportError:
        return
    if getattr(bindings, "call_entry_function", None) == _PLAIN_CALL:
        bindings.call_entry_function = _NOGIL_CALL


def fused(kind: str, numel: int) -> Callable[..., tuple[torch.Tensor, ...] | None] | None:
    """A runner for the compiled `kind` kernel, or None (disabled, failed before, or input too small to be worth it).

    The runner takes the kernel's arguments with `num` as a Python float and returns None if compilation fails.
    """
    if _state["disabled"] or numel < MIN_ELEMENTS:
        return None
    if kind not in _compiled:
        _release_gil_in_kernels()
        _compiled[kind] = torch.compile(KERNELS[kind], dynamic=True)
    fn = _compiled[kind]

    def runner(*args: object) -> tuple[torch.Tensor, ...] | None:
        return _run(kind, fn, args)

    return runner


def _run(kind: str, fn: Callable[..., tuple[torch.Tensor, ...]], args: tuple) -> tuple[torch.Tensor, ...] | None:
    """Call the compiled kernel (compiling each variant once, under a lock); None if compilation fails."""
    args = tuple(torch.tensor(a, dtype=torch.float32) if isinstance(a, float) else a for a in args)
    key = (kind, args[0].shape[0]) + tuple(a for a in args if isinstance(a, (int, bool)))
    try:
        if key in _ready:
            return fn(*args)
        with _lock:
            out = fn(*args)
            _ready.add(key)
            return out
    except Exception as e:  # no compiler, unsupported platform...: the eager path is the reference anyway
        _state["disabled"] = True
        print(f"note: fused K-quant kernel unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
              "using the eager torch path", file=sys.stderr)
        return None
