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
