"""GGUF tensors from a checkpoint: ggml types per tensor, and streaming byte production.

The layout (names, shapes, sources) is dshub.gguf_layout's. Stacked experts are produced expert by expert and
row-chunk by row-chunk, so no stacked tensor and no whole 2-D float32 tensor is ever held in memory.
"""
from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from dshub.arch import family_for, spec_for
from dshub.arch.spec import INT_TABLE_DTYPES, MXFP4_CODE_DTYPES, fp8_scale_name
from dshub.quant.mxfp4 import repack_gguf
from dshub.checkpoint.reader import Checkpoint, read_span
from dshub.errors import CheckpointError
from dshub.formats.gguf_file import TensorInfo
from dshub.formats.gguf_layout import Source, forced_f32
from dshub.checkpoint.header import TensorEntry
from dshub.checkpoint.writer import ST_TO_TORCH
from dshub.quant import get_codec
import dshub.quant.gguf  # noqa: F401  (registers the gguf_* codecs)
from dshub.quant.gguf.legacy_imatrix import quantize_slices
from dshub.quant.gguf.types import fit_type

from dshub.converters.gguf.schemes import TypeFn

CHUNK_BYTES = 4 << 20  # float32 bytes dequantized per step, per worker (peak memory ~ a few of these)


@dataclass(frozen=True)
class Job:
    """One piece of work: float32 rows of HF tensor `name` starting at `row0`, computed by `fn`."""

    name: str
    row0: int
    fn: Callable[[], torch.Tensor]


@dataclass(frozen=True)
class PlannedTensor:
    info: TensorInfo
    source: Source
    asked: str  # what the scheme asked for ("F32" for forced tensors)
    note: str | None = None  # why the type differs from `asked`, or why it is F32

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.info.name, "shape": list(self.info.shape), "type": self.info.ggml_type, "bytes": self.info.nbytes,
                "asked": self.asked, **({"note": self.note} if self.note else {})}


def plan_tensors(mapped: list[tuple[str, tuple[int, ...], Source]], type_fn: TypeFn,
                 fixed: dict[str, str] | None = None) -> list[PlannedTensor]:
    """Give each mapped tensor its ggml type: the family's `fixed` type (what llama.cpp's converter keeps it as), F32
    where llama.cpp forces it, else the scheme's, with row-size fallback."""
    planned = []
    fixed = fixed or {}
    for name, shape, src in mapped:
        if name in fixed:
            planned.append(PlannedTensor(TensorInfo(name, shape, fixed[name]), src, fixed[name], "kept as the family's converter keeps it"))
            continue
        if forced_f32(name, shape):
            planned.append(PlannedTensor(TensorInfo(name, shape, "F32"), src, "F32", "kept in F32 (norm, bias or router)"))
            continue
        asked = type_fn(name, shape).upper()
        used, why = fit_type(asked, shape[-1])
        planned.append(PlannedTensor(TensorInfo(name, shape, used), src, asked, why))
    return planned


# ---------------------------------------------------------------- reading source values
def read_rows(path: Path, e: TensorEntry, r0: int, r1: int) -> torch.Tensor:
    """Rows [r0, r1) of a 2-D tensor (or all of a 1-D one) straight from the file."""
    cols = e.shape[1] if len(e.shape) == 2 else e.numel
    item = e.nbytes // max(1, e.numel)
    buf = read_span(path, e.start + r0 * cols * item, (r1 - r0) * cols * item, e.name)
    shape = (r1 - r0, cols) if len(e.shape) == 2 else tuple(e.shape)
    return buf.view(ST_TO_TORCH[e.dtype]).reshape(shape)


class SourceReader:
    """Float32 values of checkpoint tensors, block-FP8 dequantized exactly (fp32(w) * fp32(scale_inv)), MXFP4 codes
    decoded exactly (e2m1 * 2^(e-127))."""

    def __init__(self, ckpt: Checkpoint, device: str = "cpu", backend: str = "torch"):
        self.ckpt = ckpt
        self.device = device  # where quantizers run when a kernel exists there (dequantization stays on the CPU)
        self.backend = backend  # the CPU backend chain ("native+ggml", ...) where the device has no kernel
        self.block = ckpt.encoding.block or (128, 128)
        self.dequant = get_codec("fp8_block_dequant_f32", "cpu", backend)
        self.dequant_mx = get_codec("mxfp4_dequant_f32", "cpu")
        spec = spec_for(ckpt.config)
        self.scales = {t.name: t.scale_name for t in spec if t.quantized}  # the family's scale names
        self.mxfp4 = {t.name for t in spec if t.mxfp4}

    def scale_entry(self, name: str, path: Path) -> tuple[Path, TensorEntry]:
        sname = self.scales.get(name) or fp8_scale_name(name)
        if sname not in self.ckpt.weight_map:
            raise CheckpointError(f"quantized weight without {sname}", path=str(path), show_path=self.ckpt.weight_map[name], tensor=name)
        return self.entry(sname)

    def raw(self, name: str) -> torch.Tensor:
        """A tensor as stored (no decoding)."""
        path, e = self.entry(name)
        return read_rows(path, e, 0, e.shape[0] if len(e.shape) == 2 else 1).reshape(e.shape)

    def mxfp4_blocks(self, name: str) -> torch.Tensor:
        """An MXFP4 weight as ggml `block_mxfp4` bytes, without decoding (see dshub.quant.mxfp4.repack_gguf)."""
        path, _ = self.entry(name)
        spath, se = self.scale_entry(name, path)
        return repack_gguf(self.raw(name), read_rows(spath, se, 0, se.shape[0]))

    def entry(self, name: str) -> tuple[Path, TensorEntry]:
        return self.ckpt.shard_path(self.ckpt.weight_map[name]), self.ckpt.entry(name)

    def row_step(self, cols: int) -> int:
        br = self.block[0]
        return max(br, CHUNK_BYTES // (4 * max(1, cols)) // br * br)

    def rows(self, name: str, r0: int, r1: int) -> torch.Tensor:
        path, e = self.entry(name)
        w = read_rows(path, e, r0, r1)
        if name in self.mxfp4 and e.dtype in MXFP4_CODE_DTYPES:
            spath, se = self.scale_entry(name, path)
            return self.dequant_mx(w, read_rows(spath, se, r0, r1))
        if e.dtype.startswith("F8_"):
            spath, se = self.scale_entry(name, path)
            br = self.block[0]
            s = read_rows(spath, se, r0 // br, math.ceil(r1 / br)).to(torch.float32)
            return self.dequant(w, s, self.block)
        return w.to(torch.float32)

    def chunks(self, name: str) -> Iterator[Job]:
        """Jobs producing consecutive float32 row chunks [rows, cols] of a tensor (1-D tensors: one row)."""
        _, e = self.entry(name)
        if len(e.shape) != 2:
            yield Job(name, 0, lambda: self.rows(name, 0, 1).reshape(1, -1))
            return
        rows, cols = e.shape
        step = self.row_step(cols)
        for r0 in range(0, rows, step):
            yield Job(name, r0, lambda a=r0, b=min(rows, r0 + step): self.rows(name, a, b))

    def whole(self, name: str) -> torch.Tensor:
        _, e = self.entry(name)
        return self.rows(name, 0, e.shape[0] if len(e.shape) == 2 else 1).reshape(e.shape)


def _kv_b_part(reader: SourceReader, src: Source) -> torch.Tensor:
    """attn_k_b as [heads*kv_lora, nope] (k transposed) or attn_v_b as [heads*v_head, kv_lora]."""
    heads, nope, v_head = src.split
    w = reader.whole(src.names[0])
    w = w.view(heads, nope + v_head, w.shape[-1])
    part = w[:, :nope, :].transpose(1, 2) if src.kind == "k_b" else w[:, nope:, :]
    return part.reshape(-1, part.shape[-1]).contiguous()


def _rope_permute_rows(reader: SourceReader, src: Source, head: int) -> torch.Tensor:
    """One head's rows of q/k reordered from HF's half-split rotary layout to interleaved pairs (llama.cpp `llama`)."""
    _, hd, _ = src.split
    w = reader.rows(src.names[0], head * hd, (head + 1) * hd)
    return w.reshape(2, hd // 2, w.shape[-1]).transpose(0, 1).reshape(hd, w.shape[-1]).contiguous()


def _generated(reader: SourceReader, src: Source) -> torch.Tensor:
    """A tensor the family computes from config.json alone (e.g. llama3's rope_freqs), as one float32 row."""
    values = family_for(reader.ckpt.config).gguf_mapping().generated_values(src.kind, reader.ckpt.config)
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1)


def jobs(reader: SourceReader, p: PlannedTensor) -> Iterator[Job]:
    """Jobs, in file order, each returning one float32 [rows, cols] piece of the tensor."""
    src = p.source
    if src.kind == "tensor":
        yield from reader.chunks(src.names[0])
    elif src.kind in ("k_b", "v_b"):
        yield Job(src.names[0], 0, lambda: _kv_b_part(reader, src))
    elif src.kind == "experts":
        for name in src.names:
            yield from reader.chunks(name)
    elif src.kind == "rope_permute":
        for h in range(src.split[0]):
            yield Job(src.names[0], h * src.split[1], lambda h=h: _rope_permute_rows(reader, src, h))
    elif not src.names:  # generated from config.json
        yield Job(p.info.name, 0, lambda: _generated(reader, src))
    else:  # pragma: no cover - table and code out of step
        raise ValueError(f"unknown source kind {src.kind}")


def stored_bytes(reader: SourceReader, p: PlannedTensor) -> Iterator[Any] | None:
    """The tensor's bytes straight from the stored values where no float round trip is wanted: MXFP4 sources kept as
    GGUF MXFP4 (a lossless repack) and integer tables kept as I32; None for every other tensor."""
    names = p.source.names
    if p.info.ggml_type == "MXFP4" and all(n in reader.mxfp4 and reader.entry(n)[1].dtype in MXFP4_CODE_DTYPES for n in names):
        return (reader.mxfp4_blocks(n).numpy() for n in names)
    if p.info.ggml_type == "I32" and p.source.kind == "tensor" and reader.entry(names[0])[1].dtype in INT_TABLE_DTYPES:
        return iter([reader.raw(names[0]).to(torch.int32).numpy()])
    return None


def _runner(reader: SourceReader, p: PlannedTensor, imatrix: Any) -> Callable[[Job], Any]:
    """The function turning one of the tensor's jobs into its GGUF bytes (errors name the source shard and tensor)."""
    codec = get_codec(f"gguf_{p.info.ggml_type}", reader.device, reader.backend)  # GPU kernels take and return host tensors
    if imatrix is not None:  # the same registered codec, given each expert's (or the tensor's) importance row
        expert = {n: i for i, n in enumerate(p.source.names)} if p.source.kind == "experts" else {}
        per_slice = p.info.shape[-2] if len(p.info.shape) == 3 else 0
        plain = codec
        codec = lambda x, job: quantize_slices(plain, x, imatrix, expert.get(job.name, 0) * per_slice + job.row0,  # noqa: E731
                                               per_slice)

    def run(job: Job) -> Any:
        x = job.fn()
        try:
            return (codec(x) if imatrix is None else codec(x, job)).numpy()
        except ValueError as e:
            shard = reader.ckpt.weight_map.get(job.name, "config.json")
            where = f" (row offset {job.row0})" if job.row0 else ""
            raise CheckpointError(str(e), path=shard, tensor=job.name, show_tensor=f"tensor {job.name} -> {p.info.name}{where}") from None

    return run


def produce(reader: SourceReader, p: PlannedTensor, imatrix: Any = None) -> Iterable[Any]:
    """The tensor's GGUF bytes, chunk by chunk, computed here one after the other.

    `imatrix` (float32 [slices, ne0], see converters.gguf.imatrix) selects llama-quantize's importance-weighted paths.
    """
    raw = stored_bytes(reader, p)
    if raw is not None:
        yield from raw
        return
    run = _runner(reader, p, imatrix)
    for job in jobs(reader, p):
        yield run(job)


_END = object()  # after a tensor's last chunk in the file's stream


@contextmanager
def file_producer(reader: SourceReader, planned: list[PlannedTensor], workers: int,
                  imatrix_for: Callable[[PlannedTensor], Any]) -> Iterator[Callable[[Any], Iterable[Any]]]:
    """`produce(tensor_info)` for a whole GGUF file, called in file order (write_gguf's).

    With workers > 1, `workers` threads compute chunks in file order up to 2 x workers ahead of the writer, across
    tensor boundaries: a tensor's last chunks overlap the next tensor's first ones, so no worker idles at the end of
    each tensor. Memory stays bounded by that window (a few 4 MiB float32 chunks and their outputs).
    """
    by_name = {p.info.name: p for p in planned}
    if workers <= 1:
        yield lambda t: produce(reader, by_name[t.name], imatrix_for(by_name[t.name]))
        return
    with ThreadPoolExecutor(workers) as pool:

        def items() -> Iterator[tuple[str, Any]]:
            for p in planned:
                raw = stored_bytes(reader, p)
                if raw is not None:
                    yield from ((p.info.name, b) for b in raw)
                else:
                    run = _runner(reader, p, imatrix_for(p))
                    yield from ((p.info.name, pool.submit(run, job)) for job in jobs(reader, p))
                yield p.info.name, _END

        stream = _ahead(items(), 2 * workers)

        def produce_tensor(t: Any) -> Iterator[Any]:
            for name, value in stream:
                if name != t.name:  # pragma: no cover - writer and plan out of step
                    raise RuntimeError(f"GGUF stream produced {name} while {t.name} was asked for")
                if value is _END:
                    return
                yield value

        try:
            yield produce_tensor
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _ahead(items: Iterator[tuple[str, Any]], depth: int) -> Iterator[tuple[str, Any]]:
    """`items` in order, each future resolved, while up to `depth` later items are already submitted."""
    window: deque[tuple[str, Any]] = deque()

    def resolved(item: tuple[str, Any]) -> tuple[str, Any]:
        name, value = item
        return name, value.result() if isinstance(value, Future) else value

    for item in items:
        window.append(item)
        if len(window) > depth:
            yield resolved(window.popleft())
    while window:
        yield resolved(window.popleft())
