"""Checkpoints known by shape alone: the tensors a model's release stores, from config.json, without any data.

`release_layout` is the on-disk layout DeepSeek-style releases use (block-FP8 e4m3 linears with F32 128x128
`weight_scale_inv`, F32 router bias, BF16 elsewhere); `synth` writes exactly it, and `shape_checkpoint` wraps it in
a `Checkpoint` whose headers exist only in memory. Converters plan on such a checkpoint as on a real one, so a
catalog model (a config.json and nothing else) is sized by the same code that sizes a real conversion.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dshub.arch import spec_for
from dshub.arch.spec import ArchSpec, Role, TensorSpec
from dshub.checkpoint.header import ShardHeader, TensorEntry
from dshub.checkpoint.reader import INDEX_NAME, SINGLE_NAME, Checkpoint, load_config, pickle_files
from dshub.checkpoint.writer import TensorDecl, shard_size

SHAPES_SHARD = "model.safetensors"  # the one in-memory shard of a shape checkpoint
FP8_BLOCK = 128


def release_dtype(t: TensorSpec) -> str:
    """The dtype a release stores `t` in: FP8 / MXFP4 codes for quantized linears, a table's or an F32-only
    tensor's own dtype, F32 router bias, BF16 elsewhere."""
    if t.mxfp4:
        return "I8"
    if t.fp8:
        return "F8_E4M3"
    if t.dtypes is not None:
        return "F32" if "F32" in t.dtypes else min(t.dtypes)  # integer tables: the narrowest (I32)
    return "F32" if t.role is Role.ROUTER_BIAS else "BF16"


def release_layout(spec: ArchSpec) -> list[TensorDecl]:
    """Every stored tensor of the release, in canonical order; each quantized weight followed by its scale."""
    decls: list[TensorDecl] = []
    for t in spec:
        decls.append(TensorDecl(t.name, release_dtype(t), t.stored_shape))
        if t.mxfp4:
            decls.append(TensorDecl(t.scale_name, "F8_E8M0", t.mxfp4_scale_shape()))
        elif t.fp8:
            decls.append(TensorDecl(t.scale_name, spec.release_scale_dtype,
                                    (math.ceil(t.shape[0] / FP8_BLOCK), math.ceil(t.shape[1] / FP8_BLOCK))))
    return decls


class ShapeCheckpoint(Checkpoint):
    """A `Checkpoint` whose one shard exists only as a header (no tensor data can be read)."""

    shapes_only = True

    def read(self, name: str) -> Any:  # pragma: no cover - converters never read data while planning
        raise NotImplementedError(f"{name}: a shape checkpoint holds no data")


def shape_checkpoint(config: dict[str, Any], root: str | Path = ".") -> ShapeCheckpoint:
    """The release layout of `config` as a checkpoint rooted at `root` (its tokenizer files, if any, are used)."""
    decls = release_layout(spec_for(config))
    size = shard_size(decls, {"format": "pt"})
    start = size - sum(d.nbytes for d in decls)
    entries: dict[str, TensorEntry] = {}
    for d in decls:
        entries[d.name] = TensorEntry(d.name, d.dtype, tuple(d.shape), start, start + d.nbytes)
        start += d.nbytes
    ckpt = ShapeCheckpoint(Path(root), config, {d.name: SHAPES_SHARD for d in decls}, None)
    ckpt._headers[SHAPES_SHARD] = ShardHeader(Path(root) / SHAPES_SHARD, entries, {"format": "pt"}, size - sum(d.nbytes for d in decls), size)
    return ckpt


def is_config_only(path: str | Path) -> bool:
    """A directory with a config.json and no weights at all (no index, no single shard, no pickle files)."""
    p = Path(path)
    return (p.is_dir() and (p / "config.json").is_file() and not (p / INDEX_NAME).exists()
            and not (p / SINGLE_NAME).exists() and not pickle_files(p))


def open_for_planning(path: str | Path) -> Checkpoint:
    """The checkpoint at `path` for sizing and dry runs: its real headers, or, for a directory holding only a
    config.json (e.g. a catalog model's), that config's release layout."""
    if is_config_only(path):
        return shape_checkpoint(load_config(Path(path)), path)
    return Checkpoint.open(path)
