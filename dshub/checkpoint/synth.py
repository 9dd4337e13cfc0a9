"""Synthetic checkpoints with the real layout and a real tokenizer: DeepSeek-V3 and V3.2 (block-FP8 weights, F32
scales, MTP layer, index; a tokenizer.json or Kimi's tiktoken vocabulary), DeepSeek-V4 under its original names (e8m0
scales, MXFP4 or FP8 experts, hash-routing tables) and the R1 distills' dense Qwen2 / Llama decoders (BF16)."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dshub.arch import spec_for
from dshub.arch.deepseek_v4 import EXAMPLE as V4_EXAMPLE
from dshub.arch.spec import MXFP4_GROUP, Role, TensorSpec
from dshub.quant.mxfp4 import E2M1_VALUES
from dshub.errors import UsageError
from dshub.fsutil import atomic_open, write_json_atomic
from dshub.checkpoint.shapes import release_layout
from dshub.checkpoint.writer import TensorDecl, write_shard
from dshub.checkpoint.synth_tiktoken import build_tiktoken
from dshub.checkpoint.synth_tokenizer import build_tokenizer

FP8_MAX = 448.0  # largest finite e4m3fn value
QUANTIZATION_CONFIG = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}


@dataclass(frozen=True)
class Preset:
    """Model dimensions of a synthetic checkpoint plus how to shard it."""

    dims: dict[str, Any]
    shard_bytes: int
    description: str
    yarn: bool = False
    config: dict[str, Any] | None = None  # config.json fields set over the DeepSeek-V3 ones (another family's)
    tokenizer: str = "tokenizer.json"  # or "tiktoken": Kimi's tiktoken.model layout (synth_tiktoken)
    family: str = "deepseek_v3"  # which config.json writer (CONFIG_WRITERS) and tokenizer (TOKENIZER_PRE) the preset uses


TINY_DIMS: dict[str, Any] = dict(
    hidden_size=256, num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=4, q_lora_rank=192,
    kv_lora_rank=128, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64, intermediate_size=512,
    moe_intermediate_size=256, n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1,
    n_shared_experts=1, num_nextn_predict_layers=1, max_position_embeddings=4096,
)

# DeepSeek-V3.2's config.json additions (deepseek-ai/DeepSeek-V3.2-Exp config.json: index_n_heads 64,
# index_head_dim 128, index_topk 2048), scaled down; index_topk is below the test prompts' lengths so the indexer selects.
V32_FIELDS: dict[str, Any] = {"architectures": ["DeepseekV32ForCausalLM"], "model_type": "deepseek_v32",
                              "index_n_heads": 16, "index_head_dim": 64, "index_topk": 8}

TINY_DENSE_DIMS: dict[str, Any] = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(TINY_DIMS, shard_bytes=1 << 20, description="seconds to write; for tests (3 layers, 8 experts, MTP layer)"),
    "tiny-yarn": Preset(
        dict(TINY_DIMS, max_position_embeddings=16384),
        shard_bytes=1 << 20,
        description="tiny with a YaRN rope_scaling block (factor 4, as V3's is 40)",
        yarn=True,
    ),
    "tiny-v2": Preset(
        dict(TINY_DIMS, num_hidden_layers=2, q_lora_rank=None, n_routed_experts=4, n_group=1, num_nextn_predict_layers=0),
        shard_bytes=1 << 20,
        description="V2-Lite-like: q_lora_rank null (q_proj), no MTP",
    ),
    "tiny-v32": Preset(
        TINY_DIMS,
        shard_bytes=1 << 20,
        description="DeepSeek-V3.2: tiny plus the lightning indexer (16 heads of 64, top-k 8) in every layer, MTP layer",
        config=V32_FIELDS,
    ),
    "tiny-kimi": Preset(
        TINY_DIMS,
        shard_bytes=1 << 20,
        description="Kimi-K2-like: tiny with model_type kimi_k2 and a tiktoken vocabulary (tiktoken.model, no tokenizer.json)",
        config={"model_type": "kimi_k2"},
        tokenizer="tiktoken",
    ),
    "tiny-v4": Preset(dict(V4_EXAMPLE), shard_bytes=1 << 20, family="deepseek_v4",
                      description="DeepSeek-V4 layout: MXFP4 experts, e8m0 scales, a hash layer, every attention kind, MTP"),
    "tiny-v4-base": Preset(dict(V4_EXAMPLE, expert_dtype="fp8"), shard_bytes=1 << 20, family="deepseek_v4",
                           description="tiny-v4 as V4-Flash-Base ships: block-FP8 experts, F32 scales"),
    "bench-v4": Preset(dict(V4_EXAMPLE, hidden_size=1024, num_attention_heads=8, head_dim=512, qk_rope_head_dim=64,
                            q_lora_rank=512, o_groups=4, o_lora_rank=256, n_routed_experts=32, num_experts_per_tok=4,
                            moe_intermediate_size=1024, index_n_heads=8, index_head_dim=128, sliding_window=128),
                       shard_bytes=200 << 20, family="deepseek_v4",
                       description="a few hundred MB of DeepSeek-V4 (MXFP4 experts, 32 per layer); for benchmarks"),
    "bench": Preset(
        dims=dict(hidden_size=2048, num_hidden_layers=4, first_k_dense_replace=1, num_attention_heads=16, q_lora_rank=768,
                  kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, intermediate_size=5632,
                  moe_intermediate_size=1024, n_routed_experts=32, num_experts_per_tok=4, n_group=4, topk_group=2,
                  n_shared_experts=1, num_nextn_predict_layers=1, max_position_embeddings=16384),
        shard_bytes=200 << 20,
        description="a few hundred MB, wide layers, 32 experts; for benchmarks",
    ),
    # The R1 distills' dense decoders, shrunk: GQA (4 query heads over 2 KV heads, head_dim 64), untied embeddings.
    "tiny-qwen2": Preset(TINY_DENSE_DIMS, shard_bytes=1 << 20, family="qwen2",
                         description="R1-Distill-Qwen-like: Qwen2 with q/k/v biases, BF16, 2 layers"),
    "tiny-llama": Preset(TINY_DENSE_DIMS, shard_bytes=1 << 20, family="llama",
                         description="R1-Distill-Llama-like: Llama with llama3 rope scaling, BF16, 2 layers"),
    "bench-qwen2": Preset(dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=8, num_attention_heads=16,
                               num_key_value_heads=4), shard_bytes=200 << 20, family="qwen2",
                          description="a few hundred MB of Qwen2 (distill) layers; for the ONNX benchmark"),
}


# The distills' config.json fields beyond the dimensions (deepseek-ai/DeepSeek-R1-Distill-Qwen-7B and
# -Llama-8B config.json), per family.
DENSE_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
              "hidden_act": "silu", "initializer_range": 0.02, "max_position_embeddings": 131072,
              "max_window_layers": 28, "rms_norm_eps": 1e-06, "rope_theta": 10000, "sliding_window": 4096,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True, "use_mrope": False,
              "use_sliding_window": False},
    "llama": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
              "attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02,
              "max_position_embeddings": 131072, "mlp_bias": False, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
              "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                               "original_max_position_embeddings": 8192, "rope_type": "llama3"},
              "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True},
}
# Which pre-tokenizer each family's synthetic tokenizer gets (synth_tokenizer.PRETOKENIZERS).
TOKENIZER_PRE: dict[str, str] = {"deepseek_v3": "deepseek-v3", "deepseek_v4": "deepseek-v3", "qwen2": "qwen2",
                                 "llama": "llama3"}


def make_config(preset: Preset, vocab_size: int) -> dict[str, Any]:
    """config.json as the hub writes it for the preset's family."""
    return CONFIG_WRITERS[preset.family](preset, vocab_size)


def make_dense_config(preset: Preset, vocab_size: int) -> dict[str, Any]:
    """config.json of an R1 distill (Qwen2 / Llama): the family's fields, then the preset's dimensions."""
    return dict(sorted({**DENSE_CONFIGS[preset.family], **preset.dims, "vocab_size": vocab_size,
                        "bos_token_id": 0, "eos_token_id": 1, "transformers_version": "4.46.3"}.items()))


def make_v3_config(preset: Preset, vocab_size: int) -> dict[str, Any]:
    """config.json as the hub writes it for DeepSeek-V3 (fields, order and quantization_config shape)."""
    d = preset.dims
    cfg: dict[str, Any] = {
        "architectures": ["DeepseekV3ForCausalLM" if d["q_lora_rank"] or d["num_nextn_predict_layers"] else "DeepseekV2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": d["first_k_dense_replace"],
        "hidden_act": "silu",
        "hidden_size": d["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": d["intermediate_size"],
        "kv_lora_rank": d["kv_lora_rank"],
        "max_position_embeddings": d["max_position_embeddings"],
        "model_type": "deepseek_v3",
        "moe_intermediate_size": d["moe_intermediate_size"],
        "moe_layer_freq": 1,
        "n_group": d["n_group"],
        "n_routed_experts": d["n_routed_experts"],
        "n_shared_experts": d["n_shared_experts"],
        "norm_topk_prob": True,
        "num_attention_heads": d["num_attention_heads"],
        "num_experts_per_tok": d["num_experts_per_tok"],
        "num_hidden_layers": d["num_hidden_layers"],
        "num_key_value_heads": d["num_attention_heads"],
        "num_nextn_predict_layers": d["num_nextn_predict_layers"],
        "q_lora_rank": d["q_lora_rank"],
        "qk_nope_head_dim": d["qk_nope_head_dim"],
        "qk_rope_head_dim": d["qk_rope_head_dim"],
        "quantization_config": dict(QUANTIZATION_CONFIG),
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "tie_word_embeddings": False,
        "topk_group": d["topk_group"],
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "v_head_dim": d["v_head_dim"],
        "vocab_size": vocab_size,
    }
    if cfg["architectures"] == ["DeepseekV2ForCausalLM"]:
        cfg.update(model_type="deepseek_v2", scoring_func="softmax", topk_method="greedy")
    cfg.update(preset.config or {})
    if preset.yarn:
        cfg["rope_scaling"] = {"beta_fast": 32, "beta_slow": 1, "factor": 4.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                               "original_max_position_embeddings": 4096, "type": "yarn"}
    return cfg


def make_v4_config(preset: Preset, vocab_size: int) -> dict[str, Any]:
    """config.json as DeepSeek-V4's release writes it: legacy fields (compress_ratios, num_hash_layers,
    qk_rope_head_dim), expert_dtype, FP8 quantization_config (ue8m0 scales beside MXFP4 experts)."""
    d = dict(preset.dims)
    qc = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
    if d["expert_dtype"] == "fp4":
        qc["scale_fmt"] = "ue8m0"
    d.update(vocab_size=vocab_size, quantization_config=qc, bos_token_id=0, eos_token_id=1, hidden_act="silu",
             attention_bias=False, tie_word_embeddings=False, torch_dtype="bfloat16", topk_method="noaux_tc",
             rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 4, "original_max_position_embeddings": 1024,
                           "type": "yarn"})
    return dict(sorted(d.items()))


CONFIG_WRITERS = {"deepseek_v3": make_v3_config, "deepseek_v4": make_v4_config, "qwen2": make_dense_config,
                  "llama": make_dense_config}


def e8m0_scales(amax: torch.Tensor, code_max: float) -> torch.Tensor:
    """The smallest power-of-two scales with amax / scale <= code_max, as float32 (what e8m0 holds)."""
    exp = torch.ceil(torch.log2(amax.clamp(min=1e-30) / code_max)).clamp(-127, 127)
    return torch.exp2(exp)


def quantize_mxfp4(w: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MXFP4 codes `[rows, cols/2]` (int8, low nibble = even element) and e8m0 scales `[rows, cols/32]` of `w`:
    per 32-group a power-of-two scale, each value rounded to the nearest e2m1 code (ties to the even code)."""
    rows, cols = w.shape
    groups = w.view(rows, cols // MXFP4_GROUP, MXFP4_GROUP)
    scale = e8m0_scales(groups.abs().amax(dim=-1), 6.0)
    lut = torch.tensor(E2M1_VALUES[:8])
    x = (groups / scale[..., None]).clamp(-6.0, 6.0)
    mag = (x.abs()[..., None] - lut).abs().argmin(dim=-1)
    codes = (mag | torch.where(x < 0, 8, 0)).view(rows, cols).to(torch.uint8)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).view(torch.int8)
    return packed.contiguous(), scale.to(torch.float8_e8m0fnu).contiguous()


def hash_table(vocab: int, top_k: int, n_experts: int, gen: torch.Generator) -> torch.Tensor:
    """A hash-routing table: `top_k` distinct expert ids per token id (int32)."""
    return torch.rand((vocab, n_experts), generator=gen).argsort(dim=1)[:, :top_k].to(torch.int32).contiguous()


def quantize_fp8_block(w: torch.Tensor, block: int = 128, e8m0: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize fp32 `w` to e4m3 with one scale (the `_scale_inv` multiplier) per block×block tile: F32, or with
    `e8m0` a power of two stored as float8_e8m0fnu (DeepSeek-V4's ue8m0 scale format)."""
    rows, cols = w.shape
    rb, cb = math.ceil(rows / block), math.ceil(cols / block)
    padded = torch.zeros(rb * block, cb * block)
    padded[:rows, :cols] = w
    tiles = padded.view(rb, block, cb, block)
    amax = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    scale = e8m0_scales(amax, FP8_MAX) if e8m0 else (amax / FP8_MAX).float()
    q = (tiles / scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).view(rb * block, cb * block)[:rows, :cols]
    return q.to(torch.float8_e4m3fn).contiguous(), (scale.to(torch.float8_e8m0fnu) if e8m0 else scale).contiguous()


def _values(t: TensorSpec, gen: torch.Generator) -> torch.Tensor:
    """fp32 values with a plausible distribution for the tensor's role."""
    if len(t.shape) == 1:
        if t.role is Role.ROUTER_BIAS or t.name.endswith(".bias"):
            return torch.randn(t.shape, generator=gen) * 0.05
        return 1.0 + 0.1 * torch.randn(t.shape, generator=gen)
    rows, cols = t.shape
    w = torch.randn((rows, cols), generator=gen) * (1.0 / math.sqrt(cols))
    if t.role is Role.ROUTER:
        # A trained router has experts with clearly different scores: give each expert row its own magnitude and bias direction.
        w = w * torch.exp(0.7 * torch.randn((rows, 1), generator=gen)) * 4.0
    elif t.fp8:
        # Spread block magnitudes so scales differ from block to block, as in trained weights.
        rb, cb = math.ceil(rows / 128), math.ceil(cols / 128)
        mag = torch.exp(0.5 * torch.randn((rb, cb), generator=gen)).repeat_interleave(128, 0).repeat_interleave(128, 1)
        w = w * mag[:rows, :cols]
    elif t.role in (Role.EMBED, Role.MTP, Role.HEAD):
        w = w * (math.sqrt(cols) * 0.02 if t.role is not Role.HEAD else 1.0)
    return w


def plan_shards(decls: list[TensorDecl], shard_bytes: int, scales: frozenset[str] = frozenset()) -> list[list[TensorDecl]]:
    """Group tensors (in order) into shards of about `shard_bytes`, never splitting a layer's scale from its weight."""
    shards: list[list[TensorDecl]] = [[]]
    size = 0
    for d in decls:
        if shards[-1] and size + d.nbytes > shard_bytes and not (d.name.endswith("_scale_inv") or d.name in scales):
            shards.append([])
            size = 0
        shards[-1].append(d)
        size += d.nbytes
    return shards


def write_synthetic(out: str | Path, preset: str = "tiny", seed: int = 0) -> dict[str, Any]:
    """Write a synthetic block-FP8 checkpoint to `out`. Deterministic for (preset, seed). Returns a summary."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if p.tokenizer == "tiktoken":
        tiktoken_model, tok_cfg, tokenization, vocab_size = build_tiktoken()
        specials = {v["content"]: int(k) for k, v in tok_cfg["added_tokens_decoder"].items()}
    else:
        tok_json, tok_cfg, n_ids = build_tokenizer(pre=TOKENIZER_PRE[p.family])
        vocab_size = n_ids + (-n_ids % 64) + 64  # padded with unused ids, as V3's 129280 > its 128815 + added tokens
    config = make_config(p, vocab_size)
    if p.tokenizer == "tiktoken":  # Kimi-K2's config.json names [BOS] / [EOS] by id
        config.update(bos_token_id=specials["[BOS]"], eos_token_id=specials["[EOS]"])
    spec = spec_for(config)

    decls = release_layout(spec)
    # HF writes the MTP layer into the last shard(s); our canonical spec order already puts it last.
    shards = plan_shards(decls, p.shard_bytes, frozenset(t.scale_name for t in spec if t.quantized))
    n = len(shards)
    names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    by_name = spec.by_name
    cache: dict[str, torch.Tensor] = {}

    def produce(d: TensorDecl) -> torch.Tensor:
        if d.name in cache:
            return cache.pop(d.name)
        t = by_name[d.name]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + _stable_hash(d.name))
        if t.max_value is not None:
            return hash_table(t.shape[0], t.shape[1], t.max_value, gen)
        v = _values(t, gen)
        if t.mxfp4:
            q, s = quantize_mxfp4(v, gen)
            cache[t.scale_name] = s
            return q
        if t.fp8:
            q, s = quantize_fp8_block(v, e8m0=spec.release_scale_dtype == "F8_E8M0")
            cache[t.scale_name] = s
            return q
        return v.to(torch.float32 if d.dtype == "F32" else torch.bfloat16)

    weight_map: dict[str, str] = {}
    total = sum(d.nbytes for d in decls)
    # bytes, rate and ETA on stderr while the shards are written (minutes for `bench`); quiet when not a TTY
    with tqdm(total=total, desc=f"synth {preset}", unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
              disable=None, leave=False) as bar:
        for name, group in zip(names, shards):
            write_shard(out / name, group, produce, metadata={"format": "pt"}, on_tensor=lambda d: bar.update(d.nbytes))
            weight_map.update({d.name: name for d in group})
    write_json_atomic(out / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    write_json_atomic(out / "config.json", config)
    write_json_atomic(out / "generation_config.json", {"_from_model_config": True, "bos_token_id": config["bos_token_id"],
                                                       "eos_token_id": config["eos_token_id"], "do_sample": True,
                                                       "temperature": 0.6, "top_p": 0.95})
    if p.tokenizer == "tiktoken":
        for name, text in (("tiktoken.model", tiktoken_model), ("tokenization_kimi.py", tokenization)):
            with atomic_open(out / name, "w") as f:
                f.write(text)
    else:
        with atomic_open(out / "tokenizer.json", "w") as f:
            json.dump(tok_json, f, ensure_ascii=False, indent=2)
    write_json_atomic(out / "tokenizer_config.json", tok_cfg)
    return {"path": str(out), "preset": preset, "seed": seed, "shards": n, "tensors": len(decls), "bytes": total,
            "params": spec.params()}


def _stable_hash(s: str) -> int:
    """A process-independent hash (Python's hash() is salted)."""
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFF
    return h
