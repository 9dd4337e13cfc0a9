"""Overlap disk reads, host<->GPU copies and codec compute across the tensors of one output file.

`TensorPipeline(load, compute, device).map(items)` yields `(item, host_result)` in input order while,
in the background, the next items are read from disk (a reader thread) and, on a GPU, staged in
pinned memory and copied to the device on a side stream. Results come back to pinned host memory
on a third stream while the next item computes. At most `depth` items are loaded but not yet
computed, and at most three results are alive (two on their way back from the GPU, one held by the
consumer), so host and device memory stay bounded by a few times the largest tensor, never by the
file or model size.

On the CPU (or under TRITON_INTERPRET=1) the same object overlaps only the disk reads with compute.

Wiring into a converter's `write_file` (results arrive in declaration order, so `write_shard` keeps
streaming one tensor at a time):

    def load(d):  # FP8 weights with their scale; anything else alone (copied through, never sent to the GPU)
        e = src[d.name]
        return (read_entry(path, e), ckpt.read(scale_name(d.name))) if e.dtype in FP8_DTYPES else (read_entry(path, e),)

    pipe = TensorPipeline(load, lambda d, ins: dequant(*ins, block) if len(ins) == 2 else ins[0], plan.device,
                          stage=lambda d: src[d.name].dtype in FP8_DTYPES)
    return write_shard(out / f.name, decls, ordered_producer(pipe.map(decls)), SHARD_METADATA, on_tensor=...)
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

import torch

from dshub.quant.device import map_tensors, torch_device

K = TypeVar("K")
DEFAULT_DEPTH = 2  # items loaded but not yet computed: the one computing and one read ahead
GPU_RESULTS_IN_FLIGHT = 2  # results copying back while the next item computes
_DONE = object()


@dataclass
class _Loaded(Generic[K]):
    item: K
    inputs: Any
    ready: Any = None  # CUDA event: inputs are on the device


@dataclass
class _Pending(Generic[K]):
    item: K
    result: Any
    done: Any = None  # CUDA event: result is in host memory


class _ReaderFailed(Exception):
    def __init__(self, exc: BaseException):
        self.exc = exc


class TensorPipeline(Generic[K]):
    """Run `compute(item, inputs)` over `items` in order with `load(item)` prefetched in the background.

    `depth` bounds the items loaded but not yet computed (1: no read-ahead; 2: one item read ahead).
    `stage(item)` False keeps that item's inputs on the host (e.g. tensors copied through unchanged).

    `load` returns host tensors (any nesting of tuples/lists/dicts); `compute` receives them on the
    codec device and returns tensors there. Results are handed back on the host, in input order.
    """

    def __init__(self, load: Callable[[K], Any], compute: Callable[[K, Any], Any], device: str = "cpu", *,
                 depth: int = DEFAULT_DEPTH, stage: Callable[[K], bool] | None = None):
        if depth < 1:
            raise ValueError(f"pipeline depth must be at least 1, got {depth}")
        self.load = load
        self.compute = compute
        self.device = torch_device(device)
        self.depth = depth
        self.stage = stage

    # ------------------------------------------------------------------ public
    def map(self, items: Iterable[K]) -> Iterator[tuple[K, Any]]:
        """Yield `(item, result)` for every item, in order. Closing the iterator early stops the reader."""
        loaded: queue.Queue = queue.Queue()
        slots = threading.BoundedSemaphore(self.depth)  # items loaded but not yet computed
        stop = threading.Event()
        gpu = self.device.type == "cuda"
        streams = (torch.cuda.Stream(self.device), torch.cuda.Stream(self.device)) if gpu else (None, None)
        reader = threading.Thread(target=self._read, args=(iter(items), loaded, slots, stop, streams[0]), name="dshub-prefetch", daemon=True)
        reader.start()
        pending: deque[_Pending[K]] = deque()
        hold = GPU_RESULTS_IN_FLIGHT if gpu else 1  # CPU results are ready when compute returns
        try:
            while True:
                got = loaded.get()
                if got is _DONE:
                    break
                if isinstance(got, _ReaderFailed):
                    raise got.exc
                pending.append(self._run(got, streams[1]))
                del got
                slots.release()
                while len(pending) >= hold:
                    yield self._finish(pending.popleft())
            while pending:
                yield self._finish(pending.popleft())
        finally:
            stop.set()
            reader.join()

    # ------------------------------------------------------------------ stages
    def _read(self, items: Iterator[K], out: queue.Queue, slots: threading.BoundedSemaphore, stop: threading.Event, h2d: Any) -> None:
        try:
            for item in items:
                while not slots.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                got = _Loaded(item, self.load(item))
                on_gpu = h2d is not None and (self.stage is None or self.stage(item))
                out.put(self._to_device(got, h2d) if on_gpu else got)
        except BaseException as e:  # handed to the consumer, which re-raises it
            out.put(_ReaderFailed(e))
            return
        out.put(_DONE)

    def _to_device(self, got: _Loaded[K], h2d: torch.cuda.Stream) -> _Loaded[K]:
        """Stage host inputs in pinned memory and start their copy to the GPU on the side stream."""

        def stage(t: torch.Tensor) -> torch.Tensor:
            pinned = t if t.is_pinned() else torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t)
            return pinned.to(self.device, non_blocking=True)

        with torch.cuda.stream(h2d):
            got.inputs = map_tensors(got.inputs, stage)
            got.ready = torch.cuda.Event()
            got.ready.record(h2d)
        return got

    def _run(self, got: _Loaded[K], d2h: Any) -> _Pending[K]:
        if got.ready is None:
            return _Pending(got.item, self.compute(got.item, got.inputs))
        compute_stream = torch.cuda.current_stream(self.device)
        compute_stream.wait_event(got.ready)
        map_tensors(got.inputs, lambda t: t.record_stream(compute_stream) or t)
        result = self.compute(got.item, got.inputs)
        d2h.wait_stream(compute_stream)
        with torch.cuda.stream(d2h):

            def back(t: torch.Tensor) -> torch.Tensor:
                if t.device.type != "cuda":
                    return t
                t.record_stream(d2h)
                return torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)

            host = map_tensors(result, back)
            done = torch.cuda.Event()
            done.record(d2h)
        return _Pending(got.item, host, done)

    @staticmethod
    def _finish(p: _Pending[K]) -> tuple[K, Any]:
        if p.done is not None:
            p.done.synchronize()
        return p.item, p.result


def ordered_producer(results: Iterator[tuple[K, Any]]) -> Callable[[K], Any]:
    """Adapt `TensorPipeline.map(...)` to a `produce(item)` callback called in the same order
    (e.g. `write_shard`'s); a call out of order is a bug and raises."""

    def produce(item: K) -> Any:
        got, result = next(results)
        if got is not item and got != item:
            raise RuntimeError(f"pipeline produced {got!r} while {item!r} was asked for")
        return result

    return produce
