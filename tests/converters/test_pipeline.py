"""dshub.converters.pipeline.TensorPipeline: in-order results, reads prefetched while the current item
computes, bounded look-ahead, errors surface in the consumer, and a shard written through it is
byte-identical to the BF16 converter's."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from dshub.arch.spec import fp8_scale_name
from dshub.converters.bf16 import FP8_DTYPES, SHARD_METADATA
from dshub.converters.pipeline import TensorPipeline, ordered_producer
from dshub.checkpoint.reader import Checkpoint, read_entry
from dshub.errors import CheckpointError
from dshub.checkpoint.header import TensorEntry
from dshub.checkpoint.writer import TensorDecl, write_shard
from dshub.quant import get_codec
from tests.support.tools import require_triton_kernels

WAIT = 20.0  # seconds a test waits for the background reader before calling it stuck


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dshub-prefetch" and t.is_alive()]


def test_results_in_order():
    pipe = TensorPipeline(lambda i: torch.full((3,), float(i)), lambda i, x: x * 2 + i)
    got = list(pipe.map(range(10)))
    assert [i for i, _ in got] == list(range(10))
    assert all(torch.equal(r, torch.full((3,), 3.0 * i)) for i, r in got)


def test_next_item_is_read_while_current_computes():
    loaded = {i: threading.Event() for i in range(4)}

    def load(i):
        loaded[i].set()
        return torch.tensor([i])

    def compute(i, x):
        if i + 1 in loaded:  # without prefetch this would wait forever (the reader runs only ahead)
            assert loaded[i + 1].wait(WAIT), f"item {i + 1} was not prefetched while {i} computed"
        return x

    assert [i for i, _ in TensorPipeline(load, compute).map(range(4))] == [0, 1, 2, 3]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_look_ahead_is_bounded(depth):
    lock = threading.Lock()
    state = {"loaded": 0, "computed": 0, "max_ahead": 0}

    def load(i):
        with lock:
            state["loaded"] += 1
            state["max_ahead"] = max(state["max_ahead"], state["loaded"] - state["computed"])
        return torch.zeros(1)

    def compute(i, x):
        threading.Event().wait(0.01)  # let the reader run as far ahead as it is allowed
        with lock:
            state["computed"] += 1
        return x

    assert len(list(TensorPipeline(load, compute, depth=depth).map(range(12)))) == 12
    assert 1 <= state["max_ahead"] <= depth


def test_load_error_reaches_the_consumer_after_earlier_results():
    def load(i):
        if i == 3:
            raise CheckpointError("model-00001.safetensors: tensor x: file ended early")
        return torch.zeros(1)

    seen = []
    with pytest.raises(CheckpointError, match="file ended early"):
        for i, _ in TensorPipeline(load, lambda i, x: x).map(range(6)):
            seen.append(i)
    assert seen == [0, 1, 2]
    assert not prefetch_threads()


def test_compute_error_stops_the_reader():
    def compute(i, x):
        raise ValueError("bad scale")

    with pytest.raises(ValueError, match="bad scale"):
        list(TensorPipeline(lambda i: torch.zeros(1), compute).map(range(1000)))
    assert not prefetch_threads()


def test_closing_early_stops_reading():
    calls = []
    it = TensorPipeline(lambda i: calls.append(i) or torch.zeros(1), lambda i, x: x).map(range(10_000))
    assert next(it)[0] == 0
    it.close()
    assert not prefetch_threads() and len(calls) < 10


def test_ordered_producer_refuses_out_of_order():
    produce = ordered_producer(TensorPipeline(lambda i: torch.zeros(1), lambda i, x: x).map(["a", "b"]))
    with pytest.raises(RuntimeError, match="produced 'a' while 'b' was asked for"):
        produce("b")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_shard_written_through_the_pipeline_matches_the_converter(device, tiny_ckpt: Path, tiny_bf16: Path, tmp_path: Path):
    """The wiring the converters use: read FP8 + scale, dequantize on the codec device, write in order."""
    if device == "cuda":
        require_triton_kernels()  # the GPU, or Triton's CPU interpreter; fails, with the reason, where neither runs
    ckpt = Checkpoint.open(tiny_ckpt)
    shard = max(ckpt.shard_names, key=lambda s: sum(e.dtype in FP8_DTYPES for e in ckpt.tensors_in(s)))
    path = ckpt.shard_path(shard)
    entries: dict[str, TensorEntry] = {e.name: e for e in ckpt.tensors_in(shard) if not e.name.endswith("_scale_inv")}
    decls = [TensorDecl(n, "BF16" if e.dtype in FP8_DTYPES else e.dtype, e.shape) for n, e in entries.items()]
    dequant = get_codec("fp8_block_dequant_bf16", device)

    def load(d: TensorDecl):
        e = entries[d.name]
        return (read_entry(path, e), ckpt.read(fp8_scale_name(d.name))) if e.dtype in FP8_DTYPES else (read_entry(path, e),)

    def compute(d: TensorDecl, ins):
        return dequant(ins[0], ins[1], ckpt.encoding.block) if len(ins) == 2 else ins[0]

    out = tmp_path / shard
    pipe = TensorPipeline(load, compute, device, stage=lambda d: entries[d.name].dtype in FP8_DTYPES)
    write_shard(out, decls, ordered_producer(pipe.map(decls)), SHARD_METADATA)
    assert sum(e.dtype in FP8_DTYPES for e in entries.values()) >= 2
    assert out.read_bytes() == (tiny_bf16 / shard).read_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pinned host memory, device streams)")
def test_gpu_results_come_back_pinned_and_correct():
    pipe = TensorPipeline(lambda i: {"x": torch.full((1 << 20,), float(i))}, lambda i, ins: ins["x"].sqrt(), "cuda", depth=3)
    for i, r in pipe.map(range(16)):
        assert r.device.type == "cpu" and r.is_pinned()
        assert torch.equal(r, torch.full((1 << 20,), float(i)).sqrt())
