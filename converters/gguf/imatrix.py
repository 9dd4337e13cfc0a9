"""Importance matrices (`--imatrix FILE`): llama.cpp's GGUF imatrix format, as llama-quantize reads it.

A file holds, per weight tensor, `<name>.in_sum2` (F32, Σ of squared input activations per input column, `ne0` values
per expert/slice) and `<name>.counts` (F32, how many activations were summed, one per expert/slice), plus the keys
`imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`. llama-quantize normalizes each slice to
`in_sum2 / count` in float32 (a slice with count 0 becomes all ones) and quantizes rows of expert/slice `e` of a 3-D
tensor with slice `e`. Tensors without an entry are quantized without one; an entry whose size does not match the
tensor is an error (token_embd excepted, as in llama.cpp). The legacy `.dat` format is not read. `write_imatrix` writes
the same format (benchmarks and tests make importance matrices for synthetic models with it).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dshub.errors import PolicyError

from dshub.converters.gguf.schemes import SchemeContext, TypeFn, register_param_hook

KEYS = ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size")
SUMS, COUNTS = ".in_sum2", ".counts"


@lru_cache(maxsize=4)
def load_imatrix(path: str) -> dict[str, np.ndarray]:
    """name -> float32 [slices, ne0] normalized importance (cached per path)."""
    import gguf

    p = Path(path)
    if not p.is_file():
        raise PolicyError("no such file", path=path, show_path=f"--imatrix {path}")
    try:
        r = gguf.GGUFReader(p)
    except Exception as e:  # gguf-py raises ValueError/struct errors of several kinds on bad input
        raise PolicyError(f"not a GGUF imatrix file ({e}); the legacy .dat format is not supported, "
                          f"convert it with llama-imatrix --in-file {p.name} -o {p.stem}.gguf", path=path) from None
    missing = [k for k in KEYS if r.get_field(k) is None]
    if missing:
        raise PolicyError(f"missing imatrix metadata {', '.join(missing)}", path=path)
    tensors = {t.name: t for t in r.tensors}
    out: dict[str, np.ndarray] = {}
    for tname, t in tensors.items():
        if not tname.endswith(SUMS):
            continue
        name = tname[: -len(SUMS)]
        c = tensors.get(name + COUNTS)
        if c is None:
            raise PolicyError(f"{tname} has no {name + COUNTS}", path=path, tensor=name, show_tensor="")
        if t.tensor_type.name != "F32" or c.tensor_type.name != "F32":
            raise PolicyError("sums and counts must be F32", path=path, tensor=name, show_tensor=name)
        sums = np.asarray(t.data, dtype=np.float32).reshape(-1)
        raw = np.asarray(c.data, dtype=np.float64).reshape(-1)
        counts = (np.sign(raw) * np.floor(np.abs(raw) + 0.5)).astype(np.float32)  # std::lround, then (float)
        if counts.size == 0 or sums.size % counts.size:
            raise PolicyError(f"{sums.size} sums do not split into {counts.size} slices", path=path, tensor=name, show_tensor=name)
        per = sums.reshape(counts.size, -1)
        norm = np.ones_like(per)
        live = counts > 0
        norm[live] = per[live] / counts[live, None]
        if not np.isfinite(norm).all():
            raise PolicyError("importance matrix has non-finite values", path=path, tensor=name, show_tensor=name)
        out[name] = norm
    if not out:
        raise PolicyError("no *.in_sum2 tensors: not an importance matrix", path=path)
    return out


def slices_for(imatrix: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The entry for GGUF tensor `name` (numpy shape), checked against it; None when absent (or token_embd mismatched)."""
    e = imatrix.get(name)
    if e is None:
        return None
    want = (shape[0] if len(shape) == 3 else 1, shape[-1])
    if e.shape != want:
        if name == "token_embd.weight":
            return None
        raise PolicyError(f"imatrix entry {name} has {e.size} values ({e.shape[0]} x {e.shape[1]}), the tensor needs "
                          f"{want[0] * want[1]} ({want[0]} x {want[1]}): was it computed for another model?", tensor=name, show_tensor="")
    return e


@register_param_hook("imatrix", order=10)  # validation only: sizes checked before any work
def _imatrix_hook(value: Any, fn: TypeFn, ctx: SchemeContext) -> TypeFn:
    data = load_imatrix(str(value))
    for name, shape in ctx.tensors:
        slices_for(data, name, shape)  # size mismatches fail now, before any work
    return fn


def write_imatrix(path: Path, entries: dict[str, tuple[np.ndarray, np.ndarray]], datasets: tuple[str, ...] = ("synthetic",),
                  chunks: int = 10, chunk_size: int = 512) -> Path:
    """A llama.cpp GGUF imatrix: per GGUF tensor name, `in_sum2` [slices, ne0] and `counts` [slices], plus its keys."""
    import gguf

    w = gguf.GGUFWriter(str(path), "imatrix")
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", list(datasets))
    w.add_uint32("imatrix.chunk_count", chunks)
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name, (sums, counts) in entries.items():
        w.add_tensor(name + SUMS, np.asarray(sums, dtype=np.float32))
        w.add_tensor(name + COUNTS, np.asarray(counts, dtype=np.float32).reshape(-1, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def synthetic_entries(tensors: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Importance data for a synthetic model's tensors (GGUF name, numpy shape): skewed positive column statistics
    per expert/slice, as activations give, with random counts; for `write_imatrix` (benchmarks, tests)."""
    g = np.random.default_rng(seed)
    out = {}
    for name, shape in tensors:
        slices = shape[0] if len(shape) == 3 else 1
        counts = g.integers(1, 500, slices).astype(np.float64)
        out[name] = ((g.random((slices, shape[-1])) ** 3 + 0.01) * counts[:, None] * 4, counts)
    return out
