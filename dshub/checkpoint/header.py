"""Parse and validate safetensors headers without reading tensor data."""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from dshub.constants import SAFETENSORS_MAX_HEADER
from dshub.checkpoint.json_limits import loads_bounded
from dshub.errors import HeaderError, ShardTruncated

# safetensors dtype tag -> bytes per element (F8 types are one byte; F4 packs two per byte, unsupported here)
DTYPE_BYTES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a shard header describes it. Offsets are absolute file positions."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ShardHeader:
    """A parsed shard header: tensors in file order, metadata, and where data starts."""

    path: Path
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    data_start: int
    file_size: int


def read_header(path: str | os.PathLike) -> ShardHeader:
    """Read and check one shard's header. Raises HeaderError / ShardTruncated naming file and tensor."""
    path = Path(path)
    name = path.name
    size = path.stat().st_size
    if size < 8:
        raise ShardTruncated(f"{size} bytes, too short to hold a safetensors header", path=str(path), show_path=name, expected=8, actual=size)
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        if hlen > SAFETENSORS_MAX_HEADER:
            raise HeaderError(f"header length {hlen} exceeds the 100 MB limit (not a safetensors file? an LFS pointer or HTML page?)", path=str(path), show_path=name)
        if 8 + hlen > size:
            raise ShardTruncated(f"header length {hlen} is larger than the file ({size} bytes)", path=str(path), show_path=name, expected=8 + hlen, actual=size)
        raw = f.read(hlen)
    try:
        doc = loads_bounded(raw)
    except ValueError as e:  # not UTF-8, not JSON, or nested too deep
        raise HeaderError(f"header is not valid JSON ({e.__class__.__name__}: {e})", path=str(path), show_path=name) from None
    if not isinstance(doc, dict):
        raise HeaderError("header is not a JSON object", path=str(path), show_path=name)
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise HeaderError("__metadata__ must map strings to strings", path=str(path), show_path=name)
    data_start = 8 + hlen
    entries: list[TensorEntry] = []
    for tname, info in doc.items():
        entries.append(_entry(path, tname, info, data_start))
    entries.sort(key=lambda e: (e.start, e.end))
    cursor = data_start
    for e in entries:
        if e.start != cursor:
            kind = "overlaps the previous tensor" if e.start < cursor else f"leaves a gap of {e.start - cursor} bytes before it"
            raise HeaderError(f"data offsets {e.start - data_start}..{e.end - data_start} {kind}", path=str(path), show_path=name, tensor=e.name)
        cursor = e.end
    if cursor != size:
        raise ShardTruncated(
            f"{cursor} bytes expected from the header, {size} found"
            + (" (truncated download? fetch it again)" if size < cursor else " (trailing bytes)"),
            path=str(path), show_path=name, expected=cursor, actual=size,
        )
    return ShardHeader(path=path, tensors={e.name: e for e in sorted(entries, key=lambda e: e.start)}, metadata=metadata, data_start=data_start, file_size=size)


def _entry(path: Path, tname: str, info: object, data_start: int) -> TensorEntry:
    name = path.name
    if not isinstance(info, dict) or {"dtype", "shape", "data_offsets"} - info.keys():
        raise HeaderError("entry needs dtype, shape and data_offsets", path=str(path), show_path=name, tensor=tname)
    dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise HeaderError(f"unknown dtype {dtype!r}", path=str(path), show_path=name, tensor=tname)
    if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
        raise HeaderError(f"bad shape {shape!r}", path=str(path), show_path=name, tensor=tname)
    if not (isinstance(offs, list) and len(offs) == 2 and all(_is_count(o) for o in offs) and offs[0] <= offs[1]):
        raise HeaderError(f"bad data_offsets {offs!r}", path=str(path), show_path=name, tensor=tname)
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if offs[1] - offs[0] != expected:
        raise HeaderError(
            f"{dtype}{list(shape)} needs {expected} bytes, offsets span {offs[1] - offs[0]}",
            path=str(path), show_path=name, tensor=tname,
        )
    return TensorEntry(tname, dtype, tuple(shape), data_start + offs[0], data_start + offs[1])


def _is_count(v: object) -> bool:
    """A non-negative JSON integer (a bool is not one, though Python calls it an int)."""
    return type(v) is int and v >= 0
