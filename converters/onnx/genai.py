"""onnxruntime-genai's `genai_config.json` for a decoder graph (the keys its model builder writes, `make_genai_config`).

Sampling defaults come from the checkpoint's generation_config.json (the distills: temperature 0.6, top-p 0.95);
`past_present_share_buffer` is off: the graph's present KV is past + new (GroupQueryAttention without a shared
buffer), as the builder writes it for the CPU.
"""
from __future__ import annotations

from typing import Any

from dshub.arch.family import DecoderFacts

GRAPH_FILE = "model.onnx"
CONFIG_FILE = "genai_config.json"
SEARCH_DEFAULTS: dict[str, Any] = {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
                                   "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1, "num_return_sequences": 1,
                                   "past_present_share_buffer": False, "repetition_penalty": 1.0, "temperature": 1.0,
                                   "top_k": 50, "top_p": 1.0}
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "repetition_penalty")


def _token(gen: dict[str, Any], config: dict[str, Any], key: str) -> Any:
    v = gen.get(key, config.get(key))
    return v if v is not None else (config.get("eos_token_id") if key == "pad_token_id" else None)


# Reasoning markers the runtime reads as bor/eor token ids (the builder writes them for models whose tokenizer has them).
REASONING_TOKENS = (("bor_token_id", "<think>"), ("eor_token_id", "</think>"))


def reasoning_token_ids(tokenizer: dict[str, Any] | None) -> dict[str, int]:
    """`bor_token_id` / `eor_token_id` from tokenizer.json's added tokens (the R1 distills' <think> and </think>)."""
    added = {a.get("content"): a.get("id") for a in (tokenizer or {}).get("added_tokens") or [] if isinstance(a, dict)}
    return {key: int(added[text]) for key, text in REASONING_TOKENS if isinstance(added.get(text), int)}


def genai_config(config: dict[str, Any], facts: DecoderFacts, gen: dict[str, Any] | None,
                 tokenizer: dict[str, Any] | None = None) -> dict[str, Any]:
    gen = gen or {}
    context = int(config["max_position_embeddings"])
    search = {**SEARCH_DEFAULTS, **{k: gen[k] for k in SAMPLING_KEYS if isinstance(gen.get(k), (int, float, bool))},
              "max_length": context}
    return {
        "model": {
            "bos_token_id": _token(gen, config, "bos_token_id"),
            "context_length": context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": GRAPH_FILE,
                "head_size": facts.head_dim(config),
                "hidden_size": int(config["hidden_size"]),
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key", "present_value_names": "present.%d.value"},
                "num_attention_heads": int(config["num_attention_heads"]),
                "num_hidden_layers": int(config["num_hidden_layers"]),
                "num_key_value_heads": facts.kv_heads(config),
            },
            "eos_token_id": _token(gen, config, "eos_token_id"),
            "pad_token_id": _token(gen, config, "pad_token_id"),
            "type": str(config.get("model_type") or "decoder"),
            "vocab_size": int(config["vocab_size"]),
            **reasoning_token_ids(tokenizer),
        },
        "search": dict(sorted(search.items())),
    }
