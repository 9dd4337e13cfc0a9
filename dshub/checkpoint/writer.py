"""Streaming safetensors writer: header first (from declared dtypes/shapes), then tensors one at a time."""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from dshub.fsutil import hashed_atomic_open
from dshub.checkpoint.header import DTYPE_BYTES

TORCH_TO_ST: dict[torch.dtype, str] = {
    torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.float8_e8m0fnu: "F8_E8M0",
    torch.int8: "I8", torch.uint8: "U8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64", torch.bool: "BOOL",
}
ST_TO_TORCH: dict[str, torch.dtype] = {v: k for k, v in TORCH_TO_ST.items()}


@dataclass(frozen=True)
class TensorDecl:
    """A tensor to be written: name, safetensors dtype tag, shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]


def encode_header(decls: list[TensorDecl], metadata: dict[str, str] | None = None) -> bytes:
    """Header bytes (length prefix + JSON padded with spaces to 8 bytes), tensors laid out in the given order."""
    doc: dict[str, object] = {}
    if metadata:
        doc["__metadata__"] = dict(sorted(metadata.items()))
    off = 0
    for d in decls:
        doc[d.name] = {"dtype": d.dtype, "shape": list(d.shape), "data_offsets": [off, off + d.nbytes]}
        off += d.nbytes
    raw = json.dumps(doc, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def shard_size(decls: list[TensorDecl], metadata: dict[str, str] | None = None) -> int:
    return len(encode_header(decls, metadata)) + sum(d.nbytes for d in decls)


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """Little-endian raw bytes of a tensor (no copy when contiguous)."""
    t = t.contiguous()
    return memoryview(t.view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def write_shard(
    path: Path,
    decls: list[TensorDecl],
    produce: Callable[[TensorDecl], torch.Tensor | Iterable[torch.Tensor]],
    metadata: dict[str, str] | None = None,
    on_tensor: Callable[[TensorDecl], None] | None = None,
) -> str:
    """Write one shard atomically, calling `produce(decl)` for each tensor in order (one alive at a time).

    `produce` returns the whole tensor, or an iterable of row chunks (same dtype, concatenated along dim 0), so a
    producer can stream a tensor without ever holding it. Returns the file's sha256, computed beside the writes."""
    with hashed_atomic_open(path) as f:
        f.write(encode_header(decls, metadata))
        for d in decls:
            out = produce(d)
            chunks = (out,) if isinstance(out, torch.Tensor) else out
            written = 0
            for t in chunks:
                if TORCH_TO_ST.get(t.dtype) != d.dtype or (isinstance(out, torch.Tensor) and tuple(t.shape) != d.shape):
                    raise ValueError(f"{path.name}: tensor {d.name}: produced {t.dtype}{list(t.shape)}, declared {d.dtype}{list(d.shape)}")
                data = tensor_bytes(t)
                f.write(data)
                written += data.nbytes
                del t, data
            if written != d.nbytes:
                raise ValueError(f"{path.name}: tensor {d.name}: produced {written} bytes, declared {d.nbytes}")
            del out, chunks
            if on_tensor:
                on_tensor(d)
    return f.hexdigest()


def write_tensors(path: Path, tensors: Iterable[tuple[str, torch.Tensor]], metadata: dict[str, str] | None = None) -> None:
    """Write in-memory tensors (small files: synth, tests) in the given order."""
    items = list(tensors)
    decls = [TensorDecl(n, TORCH_TO_ST[t.dtype], tuple(t.shape)) for n, t in items]
    by_name = dict(items)
    write_shard(path, decls, lambda d: by_name[d.name], metadata)
