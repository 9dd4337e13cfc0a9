"""llama.cpp as a bit-exact oracle: its compiled ggml quantizers, reached through llama-cpp-python's libraries.

`ggml_quantize(type, x, imatrix)` calls `ggml_quantize_chunk`, the function llama-quantize itself uses, so the
bytes are exactly what `llama-quantize` writes for one tensor. A test that calls it fails when llama-cpp-python is
missing (`.ci/llama-cpp.sh`, run by `.ci/install.sh`, installs it).
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from dshub.quant.gguf.types import GGML_TYPES
from tests.support.tools import require

_LIB: ctypes.CDLL | None = None


def ggml_lib() -> ctypes.CDLL:
    """libggml-base from the installed llama-cpp-python, or fail the test."""
    global _LIB
    if _LIB is None:
        llama_cpp = require("llama_cpp")
        path = os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so")
        lib = ctypes.CDLL(path)
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        _LIB = lib
    return _LIB


def ggml_quantize(type_name: str, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
    """llama.cpp's bytes for float32 `x` [rows, cols] as `type_name`: uint8 [rows, row_bytes]."""
    lib = ggml_lib()
    t = GGML_TYPES[type_name]
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    out = np.zeros((rows, t.row_bytes(cols)), dtype=np.uint8)
    qw = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    n = lib.ggml_quantize_chunk(t.code, x.ctypes.data, out.ctypes.data, 0, rows, cols,
                                None if qw is None else qw.ctypes.data)
    assert n == out.nbytes
    return out


def quantize_params(ftype: int, nthread: int, imatrix: dict[str, np.ndarray] | None = None):
    """llama_model_quantize's parameters for `ftype`, with `imatrix` (name -> normalized values, as llama-quantize
    --imatrix hands them to the library). The arrays the parameters point into are kept on the returned object."""
    llama_cpp = require("llama_cpp")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.nthread = ftype, nthread
    if imatrix is not None:
        keep = [np.ascontiguousarray(v.reshape(-1), dtype=np.float32) for v in imatrix.values()]
        item = llama_cpp.llama_model_imatrix_data
        arr = (item * (len(keep) + 1))()
        for i, (name, v) in enumerate(zip(imatrix, keep)):
            arr[i] = item(name.encode(), v.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), v.size)
        arr[len(keep)] = item(None, None, 0)
        p.imatrix = ctypes.cast(arr, ctypes.POINTER(item))
        p.dshub_buffers = (keep, arr)  # alive as long as the parameters
    return p
