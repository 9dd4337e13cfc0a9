"""The converter framework: registry, plan, preflight, resumable parallel execution, finalization."""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from dshub import __version__
from dshub.checkpoint.reader import Checkpoint
from dshub.constants import MANIFEST_NAME, SIDECAR_FILES
from dshub.errors import DeviceError, OutputError, UsageError
from dshub.fsutil import check_free_space, copy_atomic, remove_stale_temps, write_json_atomic
from dshub.converters.manifest import Manifest
from dshub.verify import require_valid
from dshub.quant.device import DeviceUnavailable, resolve_device

Advance = Callable[[int], None]
M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)


@dataclass
class ConversionOptions:
    """Options every target shares; target-specific ones live in `params` (validated by the converter)."""

    target: str
    out: Path
    device: str = "auto"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    drop_mtp: bool = False
    dry_run: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        """What makes two runs produce the same bytes (device and workers do not)."""
        return {"target": self.target, "drop_mtp": self.drop_mtp, "params": dict(sorted(self.params.items()))}


@dataclass
class OutputFile:
    """One file the conversion writes (a shard). `data` is whatever the converter needs to write it."""

    name: str
    nbytes: int
    tensors: int
    data: Any = None


@dataclass
class ConversionPlan:
    target: str
    source: Path
    out: Path
    files: list[OutputFile]
    summary: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    @property
    def total_bytes(self) -> int:
        return sum(f.nbytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "source": str(self.source), "out": str(self.out), "device": self.device,
                "files": [{"name": f.name, "bytes": f.nbytes, "tensors": f.tensors} for f in self.files],
                "total_bytes": self.total_bytes, **self.summary}


class Converter(ABC):
    """A conversion target. Stateless: everything a run needs is in the plan and options."""

    name: str = ""

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check and normalize target-specific options (raise UsageError). Default: none accepted."""
        if params:
            raise UsageError(f"--to {self.name} takes no option(s) {', '.join(sorted(params))}")
        return params

    def check_source(self, src: Path) -> None:
        """Refuse inputs this target cannot take, before structural verification (raise DshubError). Default: none."""

    @abstractmethod
    def plan(self, ckpt: Checkpoint, opts: ConversionOptions) -> ConversionPlan:
        """Decide every output file and its size from headers alone."""

    @abstractmethod
    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ConversionOptions, f: OutputFile, advance: Advance) -> str:
        """Write `f` into plan.out atomically; return its sha256."""

    @abstractmethod
    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ConversionOptions) -> None:
        """Write the small files that make the output complete (index, config, tokenizer...), atomically."""


CONVERTERS: dict[str, Converter] = {}


def register_converter(name: str) -> Callable[[type[Converter]], type[Converter]]:
    def deco(cls: type[Converter]) -> type[Converter]:
        inst = cls()
        inst.name = name
        CONVERTERS[name] = inst
        return cls

    return deco


def get_converter(name: str) -> Converter:
    if name not in CONVERTERS:
        raise UsageError(f"unknown target --to {name!r}; known: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[name]


def check_output_location(src: Path, out: Path) -> None:
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents:
        raise OutputError(f"{out}: the output directory must not be the input directory or inside it", path=str(out))
    if o.exists() and not o.is_dir():
        raise OutputError(f"{out}: exists and is not a directory", path=str(out))


def copy_sidecars(src: Path, out: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy tokenizer, generation config and other small files verbatim."""
    copied = []
    for name in SIDECAR_FILES:
        if name not in skip and (src / name).is_file():
            copy_atomic(src / name, out / name)
            copied.append(name)
    return copied


@dataclass
class ConversionResult:
    plan: ConversionPlan
    written: list[str]
    skipped: list[str]
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "written": self.written, "resumed_skipped": self.skipped, "dry_run": self.dry_run,
                "manifest": None if self.dry_run else str(self.plan.out / MANIFEST_NAME), "version": __version__}


def make_plan(path: str | Path, opts: ConversionOptions) -> tuple[Checkpoint, Converter, ConversionPlan]:
    """Preflight (output location, structural verify, options, device) and plan."""
    src = Path(path)
    conv = get_converter(opts.target)
    check_output_location(src, opts.out)
    if opts.drop_mtp and opts.params.get("mtp"):
        raise UsageError("--drop-mtp and --mtp contradict each other; pass one")
    opts.params = conv.validate_params(dict(opts.params))
    conv.check_source(src)
    ckpt = require_valid(src)
    plan = conv.plan(ckpt, opts)
    largest = max((e.numel for s in ckpt.shard_names for e in ckpt.tensors_in(s)), default=0)
    try:
        plan.device = resolve_device(opts.device, largest_bytes=4 * largest)  # the largest tensor as fp32 (worst case)
    except DeviceUnavailable as e:
        raise (UsageError if isinstance(e, ValueError) else DeviceError)(str(e)) from None
    return ckpt, conv, plan


def run_conversion(path: str | Path, opts: ConversionOptions, *, progress: bool | None = None) -> ConversionResult:
    """Convert the checkpoint at `path`. Resumes a previous run in the same --out; `dry_run` stops after the plan."""
    ckpt, conv, plan = make_plan(path, opts)
    if opts.dry_run:
        check_free_space(opts.out, plan.total_bytes)
        return ConversionResult(plan, [], [], dry_run=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(opts.out)
    manifest = Manifest.load_or_new(opts.out, {"source": _source_key(ckpt), **opts.key()})
    manifest.complete = False
    todo = [f for f in plan.files if not manifest.is_done(opts.out, f.name)]
    skipped = [f.name for f in plan.files if f not in todo]
    check_free_space(opts.out, sum(f.nbytes for f in todo))
    lock = threading.Lock()
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=sum(f.nbytes for f in todo), unit="B", unit_scale=True, desc=f"convert → {opts.target}",
               disable=not show, file=sys.stderr)

    def advance(n: int) -> None:
        with lock:
            bar.update(n)

    def one(f: OutputFile) -> str:
        digest = conv.write_file(ckpt, plan, opts, f, advance)
        size = (opts.out / f.name).stat().st_size
        with lock:
            manifest.record(f.name, digest, size)
        return f.name

    threads = torch.get_num_threads()
    workers = max(1, min(opts.workers, len(todo)))
    # One intra-op thread per worker: torch's OpenMP pool oversubscribed by parallel workers (or by other processes)
    # runs elementwise kernels an order of magnitude slower than a single thread does.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, opts.workers)))
    return_freed_memory()
    try:
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                written = list(pool.map(one, todo))
        else:
            written = [one(f) for f in todo]
    finally:
        bar.close()
        torch.set_num_threads(threads)
    conv.finalize(ckpt, plan, opts)
    manifest.complete = True
    manifest.save()
    return ConversionResult(plan, written, skipped)


def return_freed_memory() -> None:
    """Have glibc serve every allocation over 1 MiB with mmap and give it back on free.

    glibc raises its mmap threshold after the first large free (up to 32 MiB), after which freed tensor buffers stay
    in the heap: a streaming converter would then hold several tensors' worth of dead memory. No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


def _source_key(ckpt: Checkpoint) -> dict[str, Any]:
    """Identify the input by its resolved path and shard sizes (hashing 690 GB to key a resume would be absurd)."""
    return {"path": str(ckpt.root.resolve()), "shards": {s: ckpt.header(s).file_size for s in ckpt.shard_names}}


def write_index_and_config(out: Path, weight_map: dict[str, str], total_size: int, config: dict[str, Any]) -> None:
    write_json_atomic(out / "model.safetensors.index.json", {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))})
    write_json_atomic(out / "config.json", config)
