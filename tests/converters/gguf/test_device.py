"""`--device cuda` GGUF conversion: the Triton quantizers (interpreter on CPU tensors without a GPU) write the same
bytes as the CPU path, through the converter's own producer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dshub.converters.gguf.tensors import PlannedTensor, SourceReader, plan_tensors, produce
from dshub.checkpoint.reader import Checkpoint
from dshub.formats.gguf_layout import map_tensors
from dshub.quant.registry import CODECS

pytestmark = [
    pytest.mark.usefixtures("triton_kernels"),  # fails, with the reason, where the kernels cannot run
    pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter"),
]


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_0"])
def test_cuda_quantizers_in_the_producer_match_cpu(tiny_ckpt: Path, qtype: str) -> None:
    assert (f"gguf_{qtype}", "cuda") in CODECS, f"no cuda kernel registered for gguf_{qtype}"
    ckpt = Checkpoint.open(tiny_ckpt)
    planned = {p.info.name: p for p in plan_tensors(map_tensors(ckpt.config), lambda n, s: qtype)}
    for name in ("blk.0.attn_k_b.weight", "blk.1.attn_kv_a_mqa.weight"):  # small: the interpreter is slow
        p: PlannedTensor = planned[name]
        cpu = b"".join(bytes(c) for c in produce(SourceReader(ckpt, "cpu"), p))
        gpu = b"".join(bytes(np.ascontiguousarray(c)) for c in produce(SourceReader(ckpt, "cuda"), p))
        assert len(cpu) == p.info.nbytes and gpu == cpu, name


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"])
def test_imatrix_goes_through_the_selected_devices_codecs(tiny_ckpt: Path, qtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an importance matrix, the producer still takes the codec of the run's device from the registry (so
    `--device cuda --imatrix` runs the GPU codecs), and the bytes equal the CPU codec's."""
    key = (f"gguf_{qtype}", "cuda")
    assert key in CODECS, f"no cuda kernel registered for gguf_{qtype}"
    calls: list[bool] = []
    real = CODECS.get(key)

    def spy(x, imatrix=None):
        calls.append(imatrix is not None)
        return real(x, imatrix=imatrix)

    monkeypatch.setitem(CODECS._entries, key, spy)
    ckpt = Checkpoint.open(tiny_ckpt)
    planned = {p.info.name: p for p in plan_tensors(map_tensors(ckpt.config), lambda n, s: qtype)}
    p: PlannedTensor = planned["blk.1.attn_kv_a_mqa.weight"]
    rng = np.random.default_rng(7)
    imatrix = rng.uniform(0.1, 4.0, size=(1, p.info.shape[-1])).astype(np.float32)
    cpu = b"".join(bytes(c) for c in produce(SourceReader(ckpt, "cpu"), p, imatrix=imatrix))
    plain = b"".join(bytes(c) for c in produce(SourceReader(ckpt, "cpu"), p))
    gpu = b"".join(bytes(np.ascontiguousarray(c)) for c in produce(SourceReader(ckpt, "cuda"), p, imatrix=imatrix))
    assert calls and all(calls), "the cuda codec was not called with the importance matrix"
    assert len(cpu) == p.info.nbytes and gpu == cpu
    if qtype != "Q8_0":  # Q8_0 has no importance-weighted path in llama.cpp; the others must use the matrix
        assert cpu != plain
