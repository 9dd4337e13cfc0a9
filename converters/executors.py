"""Where a conversion's output files are written: `local` (a thread pool in this process) or `ray` (one Ray task per
output file on a cluster). Both take the same job and the files left to write, and report each finished file to the
same callback, which records it in the manifest: resume, atomic renames and the bytes are the executor's no concern.

Ray is an optional dependency (`pip install 'dshub[ray]'`); asking for it without it installed is a usage error.
Ray facts used here (docs.ray.io, Ray 2.x): `ray.remote(...).options(num_cpus, memory, max_retries)` — `memory` is a
logical resource the scheduler reserves; a task whose worker process dies is retried up to `max_retries` times.
Connecting, the shared-filesystem check and a task's errors are `dshub.raycluster`'s (downloads use them too).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from dshub import raycluster
from dshub.quant.registry import Registry

Record = Callable[[str, str, int], None]  # (file name, sha256, size) of a finished file
Advance = Callable[[int], None]
TASK_NAME = "dshub-convert-file"  # a worker's process title is `ray::TASK_NAME` while it runs one
TASK_RETRIES = 3  # a task whose worker dies (killed, out of memory, node lost) runs again, this often
WORKER_BASE_MEMORY = 512 << 20  # a Ray worker process with torch imported, before any tensor
TENSOR_COPIES = 3  # the largest input tensor as fp32, plus its input and output forms (the converters stream per tensor)


@dataclass
class Job:
    """Everything a task needs to write one output file (picklable: it travels to Ray workers once)."""

    ckpt: Any  # dshub.checkpoint.reader.Checkpoint
    conv: Any  # dshub.converters.base.Converter
    plan: Any  # dshub.converters.base.ConversionPlan
    opts: Any  # dshub.converters.options.TargetOptions

    def file(self, name: str) -> Any:
        return next(f for f in self.plan.files if f.name == name)

    @property
    def task_memory(self) -> int:
        """Bytes one task declares to the scheduler: a worker's base plus the plan's largest tensor in its copies."""
        return WORKER_BASE_MEMORY + TENSOR_COPIES * self.plan.largest_tensor_bytes


def write_one(job: Job, name: str, advance: Advance) -> tuple[str, str, int]:
    """Write one output file (atomically, by the converter); its name, sha256 and size."""
    digest = job.conv.write_file(job.ckpt, job.plan, job.opts, job.file(name), advance)
    return name, digest, (job.opts.out / name).stat().st_size


class Executor(Protocol):
    def run(self, job: Job, todo: list[Any], record: Record, advance: Advance) -> list[str]:
        """Write every file of `todo`, calling `record` for each as it finishes; the names written."""


class LocalExecutor:
    """A thread pool of `--workers` threads in this process (torch's threads are set by the caller)."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, job: Job, todo: list[Any], record: Record, advance: Advance) -> list[str]:
        lock = threading.Lock()

        def one(f: Any) -> str:
            name, digest, size = write_one(job, f.name, advance)
            with lock:
                record(name, digest, size)
            return name

        if self.workers > 1 and len(todo) > 1:
            with ThreadPoolExecutor(min(self.workers, len(todo))) as pool:
                return list(pool.map(one, todo))
        return [one(f) for f in todo]


def _task(job: Job, name: str) -> tuple[str, str, int]:
    """The Ray task: one output file, on one core of whichever node the scheduler chose."""
    import torch

    torch.set_num_threads(1)  # this worker process's own pool; the file's bytes do not depend on it
    return write_one(job, name, lambda n: None)


class RayExecutor:
    """One Ray task per output file, each declaring one CPU and the plan's memory; input and output on a filesystem
    every node mounts (checked first with a marker file the driver writes: `dshub.raycluster.check_shared`)."""

    def __init__(self, address: str | None):
        self.address = address

    def run(self, job: Job, todo: list[Any], record: Record, advance: Advance) -> list[str]:
        with raycluster.session(self.address) as ray:
            return self._run(ray, job, todo, record, advance)

    def _run(self, ray: Any, job: Job, todo: list[Any], record: Record, advance: Advance) -> list[str]:
        raycluster.check_shared(ray, job.opts.out, [job.ckpt.root], flag="--out", what="input and --out")
        if not todo:
            return []
        shared = ray.put(job)
        task = ray.remote(_task).options(num_cpus=1, memory=job.task_memory, max_retries=TASK_RETRIES,
                                         retry_exceptions=False, name=TASK_NAME)
        pending = {task.remote(shared, f.name): f for f in todo}
        written: list[str] = []
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    f = pending.pop(ref)
                    name, digest, size = raycluster.task_result(ray, ref, "conversion", TASK_RETRIES)
                    record(name, digest, size)
                    advance(f.nbytes)
                    written.append(name)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return sorted(written, key=[f.name for f in todo].index)


EXECUTORS: Registry[str, Callable[..., Executor]] = Registry("--executor")
EXECUTORS.add("local", lambda workers, address: LocalExecutor(workers))
EXECUTORS.add("ray", lambda workers, address: RayExecutor(address))


def check_executor(name: str, address: str | None = None) -> None:
    """Refuse an unknown executor, Ray without Ray installed, or an address for the local one (before any work)."""
    raycluster.check_executor(name, EXECUTORS, address)


def make_executor(name: str, workers: int, address: str | None = None) -> Executor:
    check_executor(name, address)
    return EXECUTORS.get(name)(workers, address)
