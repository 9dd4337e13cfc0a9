"""The Llama family (LlamaForCausalLM): DeepSeek-R1-Distill-Llama-8B / 70B.

Dense GQA decoder without biases unless `attention_bias` (transformers `modeling_llama.py`), llama3 `rope_scaling`
on the distills; llama.cpp runs it as architecture `llama`, whose rotary pairs are interleaved: q/k rows are
permuted per head (LlamaModel.permute) and llama3 scaling is written as the `rope_freqs.weight` tensor.
"""
from __future__ import annotations

from typing import Any, Mapping

from dshub.arch import dense
from dshub.arch.family import frozen
from dshub.arch.spec import ArchSpec


def llama_spec(config: dict[str, Any]) -> ArchSpec:
    return dense.dense_spec(config, dense.PROJ if config.get("attention_bias") else ())


# A small Llama config with the distills' llama3 rope scaling (Llama-3.1-8B's factors, scaled down).
EXAMPLE: Mapping[str, Any] = frozen(dict(
    architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=128, intermediate_size=352,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False, hidden_act="silu", attention_bias=False,
    rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 1024, "rope_type": "llama3"},
))

FAMILY = dense.register_dense("llama", "LlamaForCausalLM", "llama", llama_spec, EXAMPLE, "r1_distill_llama",
                              r"(?i)distill-llama", permute_qk=True)
