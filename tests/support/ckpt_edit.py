"""Editing a copied checkpoint's shards, index and config in place: the bad inputs of the hostile-input tests."""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Callable

INDEX = "model.safetensors.index.json"


def read_shard(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A shard's header (with __metadata__) and each tensor's bytes by name."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    blobs = {k: data[v["data_offsets"][0] : v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}
    return header, blobs


def write_shard(path: Path, header: dict[str, Any], blobs: dict[str, bytes]) -> None:
    """Write a shard from entries (dtype, shape) and bytes, laying the offsets out in the header's order."""
    out, pos = {}, 0
    for k, v in header.items():
        if k == "__metadata__":
            out[k] = v
            continue
        out[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [pos, pos + len(blobs[k])]}
        pos += len(blobs[k])
    h = json.dumps(out).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs[k] for k in out if k != "__metadata__"))


def write_raw_header(path: Path, header_bytes: bytes) -> None:
    """Replace a shard by a header of exactly these bytes and no data."""
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes)


def weight_map(ckpt: Path) -> dict[str, str]:
    return json.loads((ckpt / INDEX).read_text())["weight_map"]


def shard_of(ckpt: Path, tensor: str) -> Path:
    return ckpt / weight_map(ckpt)[tensor]


def retype(ckpt: Path, tensor: str, dtype: str, nbytes_per_elem: int) -> Path:
    """Store `tensor` as `dtype` (same shape; zero bytes when the size changes, its own bytes otherwise)."""
    p = shard_of(ckpt, tensor)
    header, blobs = read_shard(p)
    n = 1
    for d in header[tensor]["shape"]:
        n *= d
    if len(blobs[tensor]) != n * nbytes_per_elem:
        blobs[tensor] = bytes(n * nbytes_per_elem)
    header[tensor]["dtype"] = dtype
    write_shard(p, header, blobs)
    return p


def edit_json(path: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def set_config(ckpt: Path, dotted: str, value: Any) -> None:
    """Set a config.json field (`a.b` reaches into a nested object)."""
    def fn(cfg: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        for p in parents:
            cfg = cfg.setdefault(p, {})
        cfg[last] = value
    edit_json(ckpt / "config.json", fn)


def nested(depth: int) -> str:
    """A JSON array nested `depth` deep."""
    return "[" * depth + "]" * depth
