"""The Qwen2 family (Qwen2ForCausalLM): DeepSeek-R1-Distill-Qwen-1.5B / 7B / 14B / 32B.

Dense GQA decoder with biases on q/k/v (transformers `modeling_qwen2.py`: `q_proj`/`k_proj`/`v_proj` have
`bias=True`, `o_proj` none); llama.cpp runs it as architecture `qwen2` with NeoX rotary (no q/k permutation).
"""
from __future__ import annotations

from typing import Any, Mapping

from dshub.arch import dense
from dshub.arch.family import frozen
from dshub.arch.spec import ArchSpec

BIASES = ("q", "k", "v")


def qwen2_spec(config: dict[str, Any]) -> ArchSpec:
    return dense.dense_spec(config, BIASES)


# A small Qwen2 config: 4 query heads over 2 KV heads, untied embeddings (as the distills).
EXAMPLE: Mapping[str, Any] = frozen(dict(
    architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=128, intermediate_size=352,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512, max_position_embeddings=4096,
    rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False, hidden_act="silu",
))

FAMILY = dense.register_dense("qwen2", "Qwen2ForCausalLM", "qwen2", qwen2_spec, EXAMPLE, "r1_distill_qwen",
                              r"(?i)distill-qwen", permute_qk=False)
