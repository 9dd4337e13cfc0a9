"""The `ggml` codec backend: ggml's own quantizers, called through ctypes in the libggml-base that llama-cpp-python ships.

`ggml_quantize_chunk` is the function llama-quantize calls for every tensor, so these codecs give llama.cpp's bytes by
construction, at C speed, without torch's compiler stack. They are registered as implementation "ggml" of the same
`gguf_<TYPE>` codecs the torch references provide (dshub.quant.registry), and add the types only ggml can produce (the
IQ and ternary families, whose grid searches have no torch port). The torch path stays the reference and fallback
(backends.py chooses among them).

The library is found through the installed `llama_cpp` package (`llama_cpp/lib/libggml-base.so`) without importing it.
Loading it checks that the library's type table agrees with ours (`ggml_type_name`, `ggml_row_size` per type), so a
library built with another type enumeration is refused instead of writing wrong bytes. ggml aborts the process on a
failed assertion; every condition it asserts (row length, a required importance matrix) is checked here first and
raised as ValueError. Sources: ggml/include/ggml.h and ggml/src/ggml.c of the llama.cpp that llama-cpp-python 0.3.36
vendors.
"""
from __future__ import annotations

import ctypes
import importlib.util
import threading
from pathlib import Path
from typing import Callable

import torch

from dshub.quant.gguf.checks import check_finite, check_imatrix, check_rows
from dshub.quant.gguf.types import GGML_TYPES, GGMLType
from dshub.quant.registry import BackendUnavailable, LoadedOnce, register_codec

LIBRARY = "libggml-base.so"
# What the ggml backend quantizes: K-quants and legacy types (also in torch; same bytes), the IQ and ternary types
# (ggml only). F32/F16/BF16 stay with torch (plain conversions).
SHARED_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
GGML_ONLY_TYPES = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0")
TYPES = SHARED_TYPES + GGML_ONLY_TYPES
# ggml_quantize_requires_imatrix (ggml.c): ggml asserts an importance matrix for these; checked against the library.
NEEDS_IMATRIX = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S"})


class GGMLUnavailable(BackendUnavailable):
    """ggml's library cannot be used here; the message says why (quant imports nothing of dshub; callers map this)."""


def library_path() -> Path:
    """Where llama-cpp-python keeps libggml-base, found without importing llama_cpp; GGMLUnavailable when not installed."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        raise GGMLUnavailable("llama-cpp-python is not installed (pip install 'dshub[ggml]'), so ggml's quantizers "
                              "are not available")
    return Path(spec.origin).parent / "lib" / LIBRARY


class _Lib:
    """The loaded library with typed signatures, checked against our type table."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise GGMLUnavailable(f"{path} does not exist (llama-cpp-python installed without its libraries?)")
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise GGMLUnavailable(f"{path} cannot be loaded: {e}") from None
        try:
            lib.ggml_quantize_chunk.restype = ctypes.c_size_t
            lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
            lib.ggml_quantize_init.restype = None
            lib.ggml_quantize_init.argtypes = [ctypes.c_int]
            lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
            lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
            lib.ggml_row_size.restype = ctypes.c_size_t
            lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
            lib.ggml_type_name.restype = ctypes.c_char_p
            lib.ggml_type_name.argtypes = [ctypes.c_int]
        except AttributeError as e:
            raise GGMLUnavailable(f"{path} lacks a ggml quantization function ({e})") from None
        for name in TYPES:
            t = GGML_TYPES[name]
            got = (lib.ggml_type_name(t.code) or b"").decode().upper()
            size = lib.ggml_row_size(t.code, t.block)
            if got != name or size != t.type_size:
                raise GGMLUnavailable(f"{path}: ggml type {t.code} is {got or '?'} with {size} bytes per block, "
                                      f"dshub expects {name} with {t.type_size}: an incompatible ggml build")
            if lib.ggml_quantize_requires_imatrix(t.code) != (name in NEEDS_IMATRIX):
                raise GGMLUnavailable(f"{path}: ggml's importance-matrix requirement for {name} differs from dshub's table")
        self.lib, self.path = lib, path
        self._ready: set[int] = set()
        self._lock = threading.Lock()

    def init(self, code: int) -> None:
        """ggml_quantize_init once per type (the IQ grids), before threads share it."""
        if code not in self._ready:
            with self._lock:
                self.lib.ggml_quantize_init(code)
                self._ready.add(code)


_library = LoadedOnce(lambda: _Lib(library_path()))
load = _library.load  # the library, loaded once per process; GGMLUnavailable (the same each time) when it cannot be
unavailable_reason = _library.unavailable_reason  # why ggml's quantizers cannot be used here, or None


def _check(x: torch.Tensor, t: GGMLType, imatrix: torch.Tensor | None) -> None:
    """Every condition ggml would assert (abort) on, and non-finite input, as ValueError naming the type."""
    check_rows(x, t.name, t.block)
    check_finite(x, t.name)
    if imatrix is None and t.name in NEEDS_IMATRIX:
        raise ValueError(f"{t.name}: ggml's quantizer needs an importance matrix (--imatrix FILE)")
    check_imatrix(imatrix, t.name, x.shape[1])


def quantize(type_name: str, x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
    """float32 [rows, cols] -> ggml's bytes uint8 [rows, row bytes] for `type_name` (imatrix: float32 [cols])."""
    t = GGML_TYPES[type_name]
    _check(x, t, imatrix)
    lib = load()
    lib.init(t.code)
    x = x.contiguous()
    rows, cols = x.shape
    out = torch.empty((rows, t.row_bytes(cols)), dtype=torch.uint8)
    qw = None if imatrix is None else imatrix.to(torch.float32).contiguous()
    n = lib.lib.ggml_quantize_chunk(t.code, x.data_ptr(), out.data_ptr(), 0, rows, cols, None if qw is None else qw.data_ptr())
    if n != out.numel():
        raise ValueError(f"{t.name}: ggml wrote {n} bytes for {rows} rows of {cols}, expected {out.numel()}")
    return out


def _codec(name: str) -> Callable[..., torch.Tensor]:
    def codec(x: torch.Tensor, imatrix: torch.Tensor | None = None) -> torch.Tensor:
        return quantize(name, x, imatrix)

    codec.__name__ = f"ggml_quantize_{name.lower()}"
    codec.__doc__ = f"float32 [rows, cols] -> {name} bytes by ggml_quantize_chunk (imatrix: float32 [cols], optional)."
    return codec


for _name in TYPES:
    register_codec(f"gguf_{_name}", "ggml")(_codec(_name))
