"""GGUF files for tests: one metadata entry changed (hostile input), and llama.cpp importance matrices."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np

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


def write_imatrix(path: Path, entries: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A llama.cpp GGUF imatrix: name.in_sum2 [slices, ne0] and name.counts [slices, 1], plus its metadata keys."""
    w = gguf.GGUFWriter(str(path), "imatrix")
    w.add_string("general.type", "imatrix")
    w.add_array("imatrix.datasets", ["synthetic.txt"])
    w.add_uint32("imatrix.chunk_count", 10)
    w.add_uint32("imatrix.chunk_size", 512)
    for name, (sums, counts) in entries.items():
        w.add_tensor(name + ".in_sum2", sums.astype(np.float32))
        w.add_tensor(name + ".counts", counts.astype(np.float32).reshape(-1, 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
