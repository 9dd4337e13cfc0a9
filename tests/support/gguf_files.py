"""GGUF files with one metadata entry changed, for the hostile-input tests; importance matrices (dshub's writer)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dshub.converters.gguf.imatrix import write_imatrix  # noqa: F401  (re-exported for the tests)
from dshub.formats.gguf_file import KV, VT, TensorInfo, read_gguf_header, write_gguf


def with_kv(src: Path, dst: Path, key: str, vtype: VT, value: Any, sub: VT | None = None) -> Path:
    """Copy the GGUF `src` to `dst` with `key` set to `value` stored as `vtype` (added when absent); tensors unchanged."""
    h = read_gguf_header(src)
    kvs = [KV(k, h.kv_types[k], v, h.kv_subtypes.get(k)) for k, v in h.kv.items() if k != key]
    kvs.append(KV(key, vtype, value, sub))
    raw = src.read_bytes()

    def produce(t: TensorInfo) -> list[bytes]:
        start, end = h.tensor_data(t)
        return [raw[start:end]]

    write_gguf(dst, kvs, [TensorInfo(t.name, t.shape, t.ggml_type) for t in h.tensors], produce)
    return dst
