"""llama-quantize's named K-quant mixtures (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K) as tables.

Each mixture is a default type plus per-category bumps, reproducing `llama_tensor_get_type_impl` (src/llama-quant.cpp)
for a MoE model with more than 8 experts (deepseek2): categories are substring matches on the GGUF name, so routed
(`_exps`) and shared (`_shexp`) experts share the dense FFN's category; `ffn_down` bumps depend on the layer parsed
from `blk.N.` against n_layer; `output.weight` gets Q6_K. An MLA file has no attn_v/attn_kv_b, so llama.cpp's
attention-V bumps never fire; attn_k exists only as V3.2's indexer key projection. Row-length fallbacks (attn_k_b rows of 128: Q4_K -> Q5_0, ...) happen after the
type function, in the planner. Importing this module registers the schemes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from dshub.converters.gguf.schemes import SchemeContext, TypeFn, register_scheme

LAYER_RE = re.compile(r"^blk\.(\d+)\.")

# tensor_get_category: first match wins, substring tests in llama.cpp's order.
CATEGORIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("output", lambda n: n == "output.weight"),
    ("token_embd", lambda n: n == "token_embd.weight"),
    ("attn_qkv", lambda n: "attn_qkv.weight" in n),
    ("attn_kv_b", lambda n: "attn_kv_b.weight" in n),
    ("attn_v", lambda n: "attn_v.weight" in n),
    ("attn_k", lambda n: "attn_k.weight" in n),
    ("attn_q", lambda n: "attn_q.weight" in n),
    ("attn_output", lambda n: "attn_output.weight" in n),
    ("ffn_up", lambda n: "ffn_up" in n),
    ("ffn_gate", lambda n: "ffn_gate" in n),
    ("ffn_down", lambda n: "ffn_down" in n),
)


def category(name: str) -> str:
    """llama.cpp's quantization category of a GGUF tensor name ("other" when none applies)."""
    for cat, test in CATEGORIES:
        if test(name):
            return cat
    return "other"


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's layer selector for extra bits: the first and last eighth, and every third layer between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


# Layer predicates for ffn_down bumps: (layer, n_layer) -> bool.
LAYER_TESTS: dict[str, Callable[[int, int], bool]] = {
    "all": lambda i, n: True,
    "first_sixteenth": lambda i, n: i < n // 16,
    "first_eighth": lambda i, n: i < n // 8,
    "more_bits": use_more_bits,
}


@dataclass(frozen=True)
class Mixture:
    """A llama-quantize ftype: its default type, attn_output's type (`attn_output_8x` when the model has exactly
    8 experts, llama.cpp's Mixtral special case), and ordered (layer test, type) ffn_down rules."""

    default: str
    attn_output: str | None = None
    attn_output_8x: str | None = None
    ffn_down: tuple[tuple[str, str], ...] = field(default_factory=tuple)


MIXTURES: dict[str, Mixture] = {
    "Q2_K": Mixture("Q2_K", attn_output="Q3_K", attn_output_8x="Q5_K", ffn_down=(("all", "Q3_K"),)),
    "Q3_K_S": Mixture("Q3_K", attn_output_8x="Q5_K"),
    "Q3_K_M": Mixture("Q3_K", attn_output="Q4_K", attn_output_8x="Q5_K",
                      ffn_down=(("first_sixteenth", "Q5_K"), ("all", "Q4_K"))),
    "Q3_K_L": Mixture("Q3_K", attn_output="Q5_K", ffn_down=(("all", "Q5_K"),)),
    "Q4_K_S": Mixture("Q4_K", attn_output_8x="Q5_K", ffn_down=(("first_eighth", "Q5_K"),)),
    "Q4_K_M": Mixture("Q4_K", attn_output_8x="Q5_K", ffn_down=(("more_bits", "Q6_K"),)),
    "Q5_K_S": Mixture("Q5_K"),
    "Q5_K_M": Mixture("Q5_K", ffn_down=(("more_bits", "Q6_K"),)),
    "Q6_K": Mixture("Q6_K"),
}


# attn_k (e.g. V3.2's `indexer.attn_k`) of a model with exactly 8 experts: Q8_0 in every K-quant mixture
# (llama_tensor_get_type_impl, "for the 8-expert model, bumping this to Q8_0").
ATTN_K_8X = "Q8_0"


def layer_of(name: str, n_layer: int) -> int:
    """The layer index of a `blk.N.` tensor, checked against n_layer as llama.cpp does."""
    m = LAYER_RE.match(name)
    if not m:
        raise ValueError(f"{name}: cannot determine the layer (expected a blk.N. prefix)")
    i = int(m[1])
    if not 0 <= i < n_layer:
        raise ValueError(f"{name}: layer {i} outside [0, {n_layer})")
    return i


def mixture_type(mix: Mixture, name: str, shape: tuple[int, ...], n_layer: int, n_expert: int = 0) -> str:
    """The type llama-quantize gives tensor `name` (numpy shape) under `mix`, before the row-length fallback."""
    cat = category(name)
    if cat == "output":
        return "Q8_0" if shape[-1] % 256 else "Q6_K"  # every mixture default here has 256-element blocks
    if cat == "attn_k" and n_expert == 8:
        return ATTN_K_8X
    if cat == "attn_output":
        bump = mix.attn_output_8x if n_expert == 8 else mix.attn_output
        return bump or mix.default
    if cat == "ffn_down":
        i = layer_of(name, n_layer)
        for test, t in mix.ffn_down:
            if LAYER_TESTS[test](i, n_layer):
                return t
    return mix.default


def _make(mix: Mixture) -> Callable[[SchemeContext], TypeFn]:
    def make(ctx: SchemeContext) -> TypeFn:
        n_layer, n_expert = ctx.n_layer, int(ctx.config.get("n_routed_experts") or 0)
        return lambda name, shape: mixture_type(mix, name, shape, n_layer, n_expert)

    return make


for _name, _mix in MIXTURES.items():
    register_scheme(_name)(_make(_mix))
