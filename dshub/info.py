"""`dshub info`: what a checkpoint is, and how big each output format would be."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dshub.arch import spec_for
from dshub.arch.spec import ArchSpec, Role, TensorSpec
from dshub.checkpoint.reader import Checkpoint
from dshub.formats.int4_config import int4_summary
from dshub.verify.gguf import gguf_info, is_gguf

# Bits per weight of each output format for the two kinds of tensor: (routed-expert linear, other linear).
# Norms, router and biases stay F32 in GGUF and keep their dtype elsewhere; embeddings/lm_head count as "other".
# GGUF block sizes: Q8_0 34 B/32, Q4_0 18 B/32, Q5_0 22 B/32, Q4_K 144 B/256, Q6_K 210 B/256; Q4_K_M mixes Q4_K/Q6_K.
FORMAT_BPW: dict[str, tuple[float, float]] = {
    "bf16": (16.0, 16.0),
    "fp8 (as stored)": (8.0 + 32 / 16384, 8.0 + 32 / 16384),
    "int4 w4a16 g128 (experts)": (4.0 + 16 / 128, 16.0),
    "gguf BF16": (16.0, 16.0),
    "gguf Q8_0": (8.5, 8.5),
    "gguf Q5_0": (5.5, 5.5),
    "gguf Q4_0": (4.5, 4.5),
    "gguf Q4_K_M (approx.)": (4.5, 6.0),
}


def _is_small(t: TensorSpec) -> bool:
    return len(t.shape) == 1 or t.role in (Role.ROUTER, Role.ROUTER_BIAS)


def format_sizes(spec: ArchSpec, *, include_mtp: bool = True) -> dict[str, int]:
    """Estimated output bytes per format (weights only, MTP included unless asked)."""
    sizes: dict[str, int] = {}
    for fmt, (bpw_expert, bpw_other) in FORMAT_BPW.items():
        total = 0.0
        for t in spec:
            if t.mtp and not include_mtp:
                continue
            if _is_small(t):
                total += t.numel * 4
            elif t.role is Role.EXPERT:
                total += t.numel * bpw_expert / 8
            elif t.fp8 or "fp8" not in fmt:
                total += t.numel * bpw_other / 8
            else:
                total += t.numel * 2  # bf16 tensors stay bf16 in an FP8 checkpoint
        sizes[fmt] = int(total)
    return sizes


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    if is_gguf(path):  # a GGUF file, split set or directory of them
        return gguf_info(path)
    ckpt = Checkpoint.open(path)
    spec = spec_for(ckpt.config)
    cfg = ckpt.config
    headers = list(ckpt.headers())
    return {
        "path": str(path),
        "architecture": ckpt.architecture,
        "model_type": cfg.get("model_type"),
        "layers": spec.num_layers,
        "mtp_layers": spec.num_mtp_layers,
        "dense_layers": cfg.get("first_k_dense_replace"),
        "hidden_size": cfg.get("hidden_size"),
        "attention": {"heads": cfg.get("num_attention_heads"), "q_lora_rank": cfg.get("q_lora_rank"),
                      "kv_lora_rank": cfg.get("kv_lora_rank"), "qk_nope_head_dim": cfg.get("qk_nope_head_dim"),
                      "qk_rope_head_dim": cfg.get("qk_rope_head_dim"), "v_head_dim": cfg.get("v_head_dim")},
        "experts": {"routed": spec.num_experts, "shared": cfg.get("n_shared_experts"), "per_token": spec.experts_per_token,
                    "scoring": cfg.get("scoring_func"), "topk_method": cfg.get("topk_method")},
        "vocab_size": cfg.get("vocab_size"),
        "context_length": cfg.get("max_position_embeddings"),
        "rope_scaling": cfg.get("rope_scaling"),
        "params": spec.params(),
        "encoding": ckpt.encoding.to_dict(),
        "dtype_census": ckpt.dtype_census(),
        "shards": len(headers),
        "tensors": sum(len(h.tensors) for h in headers),
        "bytes": sum(h.file_size for h in headers),
        "output_sizes": format_sizes(spec),
        "int4": int4_summary(ckpt, spec),
    }
