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

from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.shapes import is_config_only, open_for_planning
from dshub.constants import MANIFEST_NAME, SIDECAR_FILES, VERSION
from dshub.errors import DeviceError, OutputError, UsageError
from dshub.fsutil import DISK_MARGIN, check_free_space, copy_atomic, free_space, remove_stale_temps, write_json_atomic
from dshub.converters.manifest import Manifest
from dshub.checks import require_valid
from dshub.converters.options import TargetOptions
from dshub.quant.device import DeviceUnavailable, resolve_device
from dshub.quant.registry import Registry

Advance = Callable[[int], None]
M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)


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
    options: type[TargetOptions] = TargetOptions  # the typed options this target takes

    def preflight(self, opts: TargetOptions) -> None:
        """Checks of the options that need registries the options model cannot see (raise UsageError). Default: none."""

    def intra_op_threads(self, plan: ConversionPlan, opts: TargetOptions, workers: int) -> int:
        """torch intra-op threads for the run, set once in the calling thread: the cores shared by the file workers.
        (torch's OpenMP pool oversubscribed by parallel workers runs elementwise kernels far slower than one thread.)"""
        return max(1, (os.cpu_count() or 1) // max(1, opts.workers))

    def check_source(self, src: Path) -> None:
        """Refuse inputs this target cannot take, before structural verification (raise DshubError). Default: none."""

    @abstractmethod
    def plan(self, ckpt: Checkpoint, opts: TargetOptions) -> ConversionPlan:
        """Decide every output file and its size from headers alone."""

    @abstractmethod
    def source_bytes(self, plan: ConversionPlan) -> dict[str, int]:
        """Output bytes attributable to each input tensor (file headers and metadata are the rest of total_bytes)."""

    @abstractmethod
    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: TargetOptions, f: OutputFile, advance: Advance) -> str:
        """Write `f` into plan.out atomically; return its sha256."""

    @abstractmethod
    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: TargetOptions) -> None:
        """Write the small files that make the output complete (index, config, tokenizer...), atomically."""


CONVERTERS: Registry[str, Converter] = Registry("target --to")


def register_converter(cls: type[Converter]) -> type[Converter]:
    """Register a converter under its options' target name."""
    inst = cls()
    inst.name = cls.options.target
    CONVERTERS.add(inst.name, inst)
    return cls


def get_converter(target: str) -> Converter:
    return CONVERTERS.get(target)


def check_output_location(src: Path, out: Path) -> None:
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents:
        raise OutputError("the output directory must not be the input directory or inside it", path=str(out))
    if o.exists() and not o.is_dir():
        raise OutputError("exists and is not a directory", path=str(out))


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
                "manifest": None if self.dry_run else str(self.plan.out / MANIFEST_NAME), "version": VERSION}


def make_plan(path: str | Path, opts: TargetOptions) -> tuple[Checkpoint, Converter, ConversionPlan]:
    """Preflight (options, output location, structural verify, device) and plan. `opts` is never changed."""
    src = Path(path)
    if not isinstance(opts, TargetOptions) or not opts.target:
        raise UsageError(f"options must be one target's options (Bf16Options, Int4Options, GGUFOptions), not {type(opts).__name__}")
    conv = get_converter(opts.target)
    conv.preflight(opts)
    check_output_location(src, opts.out)
    if opts.dry_run and is_config_only(src):  # a dry run of a config.json alone: its release layout, by shape
        ckpt = open_for_planning(src)
    else:
        conv.check_source(src)
        ckpt = require_valid(src)
    plan = conv.plan(ckpt, opts)
    if ckpt.shapes_only:
        plan.summary["source_layout"] = "config.json only: the release layout its architecture stores"
    largest = max((e.numel for s in ckpt.shard_names for e in ckpt.tensors_in(s)), default=0)
    try:
        plan.device = resolve_device(opts.device, largest_bytes=4 * largest)  # the largest tensor as fp32 (worst case)
    except DeviceUnavailable as e:
        raise (UsageError if isinstance(e, ValueError) else DeviceError)(str(e)) from None
    return ckpt, conv, plan


def run_conversion(path: str | Path, opts: TargetOptions, *, progress: bool | None = None) -> ConversionResult:
    """Convert the checkpoint at `path`. Resumes a previous run in the same --out; `dry_run` stops after the plan."""
    ckpt, conv, plan = make_plan(path, opts)
    if opts.dry_run:  # the plan, and whether the disk can hold it (a real run refuses when it cannot)
        free = free_space(opts.out)
        plan.summary["disk"] = {"needed": plan.total_bytes, "free": free, "fits": free >= plan.total_bytes * DISK_MARGIN}
        if not plan.summary["disk"]["fits"]:
            print(f"warning: {opts.out}: {plan.total_bytes / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free", file=sys.stderr)
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
    torch.set_num_threads(conv.intra_op_threads(plan, opts, workers))  # here, never inside a worker thread
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


_ALLOCATOR_SET = threading.Event()


def return_freed_memory() -> None:
    """Have glibc serve every allocation over 1 MiB with mmap and give it back on free (once per process).

    glibc raises its mmap threshold after the first large free (up to 32 MiB), after which freed tensor buffers stay
    in the heap: a streaming converter would then hold several tensors' worth of dead memory. No-op off glibc."""
    if _ALLOCATOR_SET.is_set():
        return
    _ALLOCATOR_SET.set()
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
