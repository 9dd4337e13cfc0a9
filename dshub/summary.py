"""`dshub info`: what a checkpoint is, and how big each output format would be."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dshub.arch import Role, family_for, spec_for
from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.shapes import open_for_planning
from dshub.converters.sizing import planned_bytes, target_options
from dshub.errors import DshubError
from dshub.formats.int4_config import int4_summary
from dshub.formats.gguf_file import is_gguf_path
from dshub.formats.onnx_info import is_onnx_dir, onnx_info
from dshub.checks.gguf import gguf_info

# The targets `dshub info` sizes: label -> (target, options). Bytes come from each converter's own plan; `{scope}`
# in a label is the family's default INT4 scope (experts for the MoE families, all-linear for the dense ones).
INFO_TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "bf16": ("bf16", {}),
    "int4 w4a16 g128 ({scope})": ("int4", {}),
    "gguf BF16": ("gguf", {"quant": "BF16"}),
    "gguf Q8_0": ("gguf", {"quant": "Q8_0"}),
    "gguf Q5_0": ("gguf", {"quant": "Q5_0"}),
    "gguf Q4_0": ("gguf", {"quant": "Q4_0"}),
    "gguf Q4_K_M": ("gguf", {"quant": "Q4_K_M"}),
    "onnx fp32": ("onnx", {}),  # dense decoders only (refused for MLA / MoE families: then left out)
    "onnx fp16": ("onnx", {"precision": "fp16"}),
    "onnx int4 b32": ("onnx", {"precision": "int4"}),
}


def output_sizes(ckpt: Checkpoint) -> dict[str, int]:
    """Bytes each target would write, from the converters' shape-only plans (as `convert --dry-run` prints them).
    A target that refuses this checkpoint (e.g. INT4 of an INT4 checkpoint) is left out."""
    sizes: dict[str, int] = {}
    family = family_for(ckpt.config)
    scope = family.int4.default if family.int4 is not None else "-"
    for label, (target, values) in INFO_TARGETS.items():
        try:
            sizes[label.format(scope=scope)] = planned_bytes(ckpt, target_options(target, **values)).total
        except DshubError:
            continue
    return sizes


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    if is_gguf_path(path):  # a GGUF file, split set or directory of them
        return gguf_info(path)
    if is_onnx_dir(path):  # an ONNX output (model.onnx + external data + genai_config.json)
        return onnx_info(path)
    ckpt = open_for_planning(path)  # a bare config.json is described by its release layout
    spec = spec_for(ckpt.config)
    cfg = ckpt.config
    headers = list(ckpt.headers())
    return {
        "path": str(path),
        "config_only": ckpt.shapes_only,
        "architecture": ckpt.architecture,
        "model_type": cfg.get("model_type"),
        "layers": spec.num_layers,
        "mtp_layers": spec.num_mtp_layers,
        "dense_layers": len({t.layer for t in spec if t.role is Role.DENSE_MLP and not t.mtp}),
        "hidden_size": cfg.get("hidden_size"),
        "attention": {"heads": cfg.get("num_attention_heads"), "kv_heads": cfg.get("num_key_value_heads"),
                      "q_lora_rank": cfg.get("q_lora_rank"),
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
        "output_sizes": output_sizes(ckpt),
        "int4": (int4 := int4_summary(ckpt, spec)),
        "kind": kind(encoding_text(ckpt.encoding.to_dict()), int4, spec.num_mtp_layers),
    }


def encoding_text(enc: dict[str, Any]) -> str:
    return enc["name"] + (f" {enc['fmt']} blocks {enc['block']}" if enc.get("block") else "")


def kind(encoding: str, int4: dict[str, Any] | None, mtp_layers: int) -> str:
    """What the checkpoint is, in a few words: `INT4 compressed-tensors W4A16 g128 (expert), rest bf16, with MTP`."""
    what = (f"INT4 {int4['format']} W4A16 g{int4['group_size']} ({', '.join(int4['quantized_roles'])}), rest {encoding}"
            if int4 else encoding)
    return f"{what}, {'with' if mtp_layers else 'without'} MTP"
