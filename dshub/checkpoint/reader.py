"""`Checkpoint`: an HF-layout directory read lazily (config, index, shard headers, per-tensor mmap reads)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import torch

from dshub.errors import CheckpointError, ConfigError, IndexError_, PickleRefused
from dshub.checkpoint.config import validate_config
from dshub.checkpoint.header import ShardHeader, TensorEntry, read_header
from dshub.checkpoint.json_limits import loads_bounded
from dshub.checkpoint.writer import ST_TO_TORCH

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

# dtype census of a checkpoint -> its weight encoding
ENCODING_BY_DTYPE: dict[str, str] = {"BF16": "bf16", "F16": "f16", "F32": "f32"}


@dataclass(frozen=True)
class Encoding:
    """How a checkpoint's linear weights are stored."""

    name: str  # "fp8-block", "bf16", "f16", "f32"
    block: tuple[int, int] | None = None  # FP8 weight_block_size
    fmt: str | None = None  # FP8 element format, e.g. "e4m3"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "block": list(self.block) if self.block else None, "fmt": self.fmt}


def pickle_files(root: Path) -> list[Path]:
    """Model files in pickle formats (never loaded by dshub)."""
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)


def safe_relative(root: Path, rel: str, *, what: str) -> Path:
    """Resolve `rel` under `root`, refusing absolute paths and `..` escapes."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or ".." in pure.parts or "\\" in rel:
        raise IndexError_(f"path {rel!r} escapes the checkpoint directory", path=rel, show_path=what)
    return root / pure


class Checkpoint:
    """A checkpoint directory. Nothing but config and index is read until asked for."""

    shapes_only = False  # True for a checkpoint known by shape alone (dshub.checkpoint.shapes)

    def __init__(self, root: Path, config: dict[str, Any], weight_map: dict[str, str], index_metadata: dict[str, Any] | None):
        self.root = root
        self.config = config
        self.weight_map = weight_map  # tensor name -> shard file name (relative)
        self.index_metadata = index_metadata
        self._headers: dict[str, ShardHeader] = {}

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | Path) -> "Checkpoint":
        root = Path(path)
        if not root.is_dir():
            raise CheckpointError("not a directory", path=str(root))
        config = load_config(root)
        index_path = root / INDEX_NAME
        if index_path.exists():
            weight_map, meta = _load_index(root, index_path)
        elif (root / SINGLE_NAME).exists():
            header = read_header(root / SINGLE_NAME)
            weight_map, meta = {n: SINGLE_NAME for n in header.tensors}, None
            ckpt = cls(root, config, weight_map, meta)
            ckpt._headers[SINGLE_NAME] = header
            return ckpt
        else:
            pickles = pickle_files(root)
            if pickles:
                raise PickleRefused(
                    "pickle model files are never loaded by dshub (they can run code); use the safetensors release",
                    path=str(pickles[0]), show_path=pickles[0].name,
                )
            raise CheckpointError(f"no {INDEX_NAME} or {SINGLE_NAME}", path=str(root))
        return cls(root, config, weight_map, meta)

    # ---------------------------------------------------------------- layout
    @cached_property
    def shard_names(self) -> list[str]:
        """Shard file names in first-appearance order of the sorted index (stable, as HF writes them)."""
        return sorted(set(self.weight_map.values()))

    def shard_path(self, shard: str) -> Path:
        return safe_relative(self.root, shard, what=INDEX_NAME)

    def header(self, shard: str) -> ShardHeader:
        if shard not in self._headers:
            self._headers[shard] = read_header(self.shard_path(shard))
        return self._headers[shard]

    def headers(self) -> Iterator[ShardHeader]:
        for shard in self.shard_names:
            yield self.header(shard)

    def entry(self, name: str) -> TensorEntry:
        shard = self.weight_map[name]
        try:
            return self.header(shard).tensors[name]
        except KeyError:
            raise IndexError_(f"tensor {name} is listed in the index but not in the shard", path=shard, tensor=name, show_tensor="") from None

    def tensors_in(self, shard: str) -> list[TensorEntry]:
        """A shard's tensors in file order."""
        return list(self.header(shard).tensors.values())

    @property
    def total_bytes(self) -> int:
        return sum(h.file_size for h in self.headers())

    def dtype_census(self) -> dict[str, int]:
        census: dict[str, int] = {}
        for h in self.headers():
            for e in h.tensors.values():
                census[e.dtype] = census.get(e.dtype, 0) + e.numel
        return dict(sorted(census.items()))

    # ---------------------------------------------------------------- data
    def read(self, name: str) -> torch.Tensor:
        """Read one tensor: a positioned read of exactly its bytes (memory = the tensor, nothing more)."""
        shard = self.weight_map[name]
        return read_entry(self.shard_path(shard), self.entry(name))

    # ---------------------------------------------------------------- encoding
    @cached_property
    def encoding(self) -> Encoding:
        return detect_encoding(self.config, self.dtype_census())

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures") or []
        return archs[0] if archs else self.config.get("model_type", "?")


def load_config(root: Path) -> dict[str, Any]:
    cfg_path = root / "config.json"
    if not cfg_path.exists():
        raise ConfigError("config.json not found", path=str(cfg_path))
    try:
        config = loads_bounded(cfg_path.read_bytes())
    except ValueError as e:  # not UTF-8, not JSON, or nested too deep
        raise ConfigError(f"not valid JSON ({e})", path=str(cfg_path), show_path=cfg_path.name) from None
    return validate_config(config, path=str(cfg_path), show_path=cfg_path.name)


def _load_index(root: Path, index_path: Path) -> tuple[dict[str, str], dict[str, Any] | None]:
    try:
        doc = loads_bounded(index_path.read_bytes())
    except ValueError as e:  # not UTF-8, not JSON, or nested too deep
        raise IndexError_(f"not valid JSON ({e})", path=str(index_path), show_path=INDEX_NAME) from None
    wm = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise IndexError_("weight_map must map tensor names to file names", path=str(index_path), show_path=INDEX_NAME)
    for tensor, shard in wm.items():
        p = safe_relative(root, shard, what=f"{INDEX_NAME}: tensor {tensor}")
        if not p.is_file():
            raise IndexError_(f"shard {shard} is missing", path=shard, show_path=INDEX_NAME, tensor=tensor)
    return dict(wm), doc.get("metadata")


def detect_encoding(config: dict[str, Any], census: dict[str, int]) -> Encoding:
    """Block FP8 when config says so (and FP8 tensors exist); else the dominant float dtype."""
    qc = config.get("quantization_config") or {}
    if qc.get("quant_method") == "fp8":
        block = qc.get("weight_block_size")
        if not (isinstance(block, list) and len(block) == 2):
            raise ConfigError("quantization_config.weight_block_size must be a [rows, cols] pair", path="config.json")
        return Encoding("fp8-block", (int(block[0]), int(block[1])), qc.get("fmt", "e4m3"))
    floats = {k: v for k, v in census.items() if k in ENCODING_BY_DTYPE}
    if not floats:
        raise CheckpointError("no floating-point tensors found", path="config.json", show_path="")
    return Encoding(ENCODING_BY_DTYPE[max(floats, key=floats.get)])


def scale_shape(shape: tuple[int, ...], block: tuple[int, int]) -> tuple[int, int]:
    """The `weight_scale_inv` shape for a 2-D block-FP8 weight."""
    return (math.ceil(shape[0] / block[0]), math.ceil(shape[1] / block[1]))


def read_span(path: Path, start: int, nbytes: int, tensor: str) -> torch.Tensor:
    """`nbytes` bytes of `path` from `start` as a fresh uint8 tensor: one positioned read, retried until complete
    (memory = the span, nothing more). A short file is a CheckpointError naming file and tensor."""
    buf = torch.empty(nbytes, dtype=torch.uint8)
    if nbytes:
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            view, got = memoryview(buf.numpy()), 0
            while got < nbytes:
                n = f.readinto(view[got:])
                if not n:
                    raise CheckpointError("file ended early", path=str(path), show_path=path.name, tensor=tensor)
                got += n
    return buf


def read_entry(path: Path, entry: TensorEntry) -> torch.Tensor:
    """Read one tensor's bytes from `path` into a fresh tensor of its dtype and shape (a dtype torch cannot hold,
    e.g. U16, is a CheckpointError naming file and tensor)."""
    dtype = ST_TO_TORCH.get(entry.dtype)
    if dtype is None:
        raise CheckpointError(f"dtype {entry.dtype} cannot be read as a tensor", path=str(path), show_path=path.name, tensor=entry.name)
    return read_span(path, entry.start, entry.nbytes, entry.name).view(dtype).reshape(entry.shape)
