"""The converter framework: registry, plan, preflight, resumable parallel execution, finalization."""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import sys
import threading
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm import tqdm

from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.shapes import is_config_only, open_for_planning
from dshub.constants import MANIFEST_NAME, SIDECAR_FILES, TMP_SUFFIX, VERSION
from dshub.errors import DeviceError, OutputError, UsageError
from dshub.fsutil import DISK_MARGIN, check_free_space, copy_atomic, free_space, remove_stale_temps, write_json_atomic
from dshub.converters.executors import Executor, Job, check_executor, make_executor
from dshub.converters.manifest import Manifest
from dshub.hub.layout import REPO_ID, cached_snapshot, hf_cache_dir
from dshub.hub.manifest import load_manifest
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
    largest_tensor_bytes: int = 0  # the largest input tensor as fp32: what one file's task holds at most, in copies

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


def check_output_location(src: Path, out: Path, *, force: bool = False) -> None:
    """--out is not the input (nor inside it), is a directory if it exists, and holds nothing but an earlier dshub
    conversion (its manifest) unless `force`: files of someone else are never written over silently."""
    s, o = src.resolve(), out.resolve()
    if o == s or s in o.parents:
        raise OutputError("the output directory must not be the input directory or inside it", path=str(out))
    if o.exists() and not o.is_dir():
        raise OutputError("exists and is not a directory", path=str(out))
    if not force and o.is_dir() and not (o / MANIFEST_NAME).exists() and not (o / LOCK_NAME).exists():
        foreign = sorted(p.name for p in o.iterdir() if not p.name.endswith(TMP_SUFFIX))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UsageError(f"--out {out}: not empty ({shown}) and not a dshub conversion (no {MANIFEST_NAME}); "
                             "choose an empty or new directory, or pass --force to write into it")


def resolve_source(path: str | Path) -> Path:
    """The checkpoint directory: `path` itself, or for a hub id (owner/name[@revision]) not present as a path, its
    snapshot in the HF cache; a hub id not there fails naming `dshub download`."""
    p = Path(path).expanduser()
    text = str(path)
    repo, _, revision = text.partition("@")
    if p.exists() or not REPO_ID.fullmatch(repo):
        return p
    snap = cached_snapshot(repo, revision or "main")
    if snap is None:
        raise UsageError(f"{text}: no such directory, and not in the HF cache ({hf_cache_dir()}); fetch it first with "
                         f"`dshub download {text.replace('@', ' --revision ')}`")
    return snap


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
    src = resolve_source(path)
    if not isinstance(opts, TargetOptions) or not opts.target:
        raise UsageError(f"options must be one target's options (Bf16Options, Int4Options, GGUFOptions), not {type(opts).__name__}")
    conv = get_converter(opts.target)
    conv.preflight(opts)
    check_output_location(src, opts.out, force=opts.force or opts.dry_run)
    if opts.dry_run and is_config_only(src):  # a dry run of a config.json alone: its release layout, by shape
        ckpt = open_for_planning(src)
    else:
        conv.check_source(src)
        ckpt = require_valid(src)
    plan = conv.plan(ckpt, opts)
    if ckpt.shapes_only:
        plan.summary["source_layout"] = "config.json only: the release layout its architecture stores"
    largest = max((e.numel for s in ckpt.shard_names for e in ckpt.tensors_in(s)), default=0)
    plan.largest_tensor_bytes = 4 * largest
    try:
        plan.device = resolve_device(opts.device, largest_bytes=4 * largest)  # the largest tensor as fp32 (worst case)
    except DeviceUnavailable as e:
        raise (UsageError if isinstance(e, ValueError) else DeviceError)(str(e)) from None
    return ckpt, conv, plan


def run_conversion(path: str | Path, opts: TargetOptions, *, progress: bool | None = None, executor: str = "local",
                   ray_address: str | None = None) -> ConversionResult:
    """Convert the checkpoint at `path`. Resumes a previous run in the same --out; `dry_run` stops after the plan.
    `executor` writes the files: `local` (--workers threads) or `ray` (one task per file on the cluster at
    `ray_address`; input and --out on a filesystem every node mounts)."""
    check_executor(executor, ray_address)
    ckpt, conv, plan = make_plan(path, opts)
    if opts.dry_run:  # the plan, and whether the disk can hold it (a real run refuses when it cannot)
        free = free_space(opts.out)
        plan.summary["disk"] = {"needed": plan.total_bytes, "free": free, "fits": free >= plan.total_bytes * DISK_MARGIN}
        if not plan.summary["disk"]["fits"]:
            print(f"warning: {opts.out}: {plan.total_bytes / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free", file=sys.stderr)
        return ConversionResult(plan, [], [], dry_run=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    with out_lock(opts.out):  # before anything in --out is removed: a second run never touches the first one's files
        return _run_locked(ckpt, conv, plan, opts, progress, make_executor(executor, opts.workers, ray_address))


def _run_locked(ckpt: Checkpoint, conv: Converter, plan: ConversionPlan, opts: TargetOptions,
                progress: bool | None, executor: Executor) -> ConversionResult:
    """The run itself, with --out locked: resume or start the manifest, write the files left, finalize."""
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

    threads = torch.get_num_threads()
    workers = max(1, min(opts.workers, len(todo)))
    torch.set_num_threads(conv.intra_op_threads(plan, opts, workers))  # here, never inside a worker thread
    return_freed_memory()
    try:
        written = executor.run(Job(ckpt, conv, plan, opts), todo, manifest.record, advance)
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


LOCK_NAME = ".dshub-convert.lock"  # in --out while a run holds it; removed when the run ends


@contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """Hold an advisory fcntl lock on `out` for one run. A second run is refused with one line naming the holder's
    pid. The lock file is removed on release, so each acquirer checks it locked the file still at that path."""
    path = out / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"in use by another dshub convert (pid {holder}); wait for it to finish or choose another --out",
                              path=str(out), show_path=f"--out {out}") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed the file after we opened it: lock the one now at that path
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: the next acquirer sees the path change and reopens
        os.close(fd)


def _source_key(ckpt: Checkpoint) -> dict[str, Any]:
    """Identify the input: its resolved path and, per shard, what changes when the shard does without hashing it
    all (690 GB): size, mtime, a sha256 of its header bytes, and the hub's sha256 when the download manifest has it."""
    hub = load_manifest(ckpt.root)
    shards: dict[str, dict[str, Any]] = {}
    for s in ckpt.shard_names:
        path, header = ckpt.shard_path(s), ckpt.header(s)
        with open(path, "rb") as f:
            head = f.read(header.data_start)
        ident: dict[str, Any] = {"size": header.file_size, "mtime_ns": os.stat(path).st_mtime_ns,
                                 "header_sha256": hashlib.sha256(head).hexdigest()}
        listed = hub.files.get(s) if hub else None
        if listed is not None and listed.sha256:
            ident["hub_sha256"] = listed.sha256
        shards[s] = ident
    return {"path": str(ckpt.root.resolve()), "shards": shards}


def write_index_and_config(out: Path, weight_map: dict[str, str], total_size: int, config: dict[str, Any]) -> None:
    write_json_atomic(out / "model.safetensors.index.json", {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))})
    write_json_atomic(out / "config.json", config)
