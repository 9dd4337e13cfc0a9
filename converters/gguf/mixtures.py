"""llama-quantize's named mixtures as tables: the K-quants (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K), the IQ
types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS, IQ3_XS, IQ3_S, IQ3_M, IQ4_XS, IQ4_NL) and the ternary
TQ1_0/TQ2_0.

Each mixture is a default type plus per-category bumps, reproducing `llama_tensor_get_type_impl` (src/llama-quant.cpp
of the llama.cpp that llama-cpp-python 0.3.36 vendors) for the DeepSeek architectures (deepseek2): categories are
substring matches on the GGUF name, so routed (`_exps`) and shared (`_shexp`) experts share the dense FFN's category;
most `ffn_down` bumps depend on the layer parsed from `blk.N.` against n_layer, but the very-low-bit ftypes (IQ1_*,
IQ2_*) count ffn_down tensors instead, in llama-quantize's order (by name): the first n_layer/8 of them get the bump.
Some choices depend on whether an importance matrix is given (IQ3_XXS, IQ4_*). An MLA file has no attn_v/attn_kv_b,
so llama.cpp's attention-V bumps never fire; attn_k exists only as V3.2's indexer key projection (Q8_0 in an
8-expert model outside the very-low-bit branch); attn_q exists only without q_lora (V2-Lite). Row-length
fallbacks (attn_k_b rows of 128: Q4_K -> Q5_0, IQ2_XXS -> IQ4_NL, ...) happen after the type function, in the
planner. A `--tensor-type` rule replaces the mixture's choice for the tensors it matches; unlike llama-quantize, the
ffn_down count above still includes them. Importing this module registers the schemes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from dshub.quant.gguf.types import GGML_TYPES

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


@dataclass(frozen=True)
class Where:
    """What a bump rule may test: the tensor's layer, the model, whether an imatrix is given, and (for ffn_down) the
    tensor's position among the ffn_down tensors in llama-quantize's order."""

    layer: int
    n_layer: int
    n_expert: int = 0
    has_imatrix: bool = False
    down_index: int = 0


# Bump conditions, by name (the mixtures' tables refer to these).
LAYER_TESTS: dict[str, Callable[[Where], bool]] = {
    "all": lambda w: True,
    "first_sixteenth": lambda w: w.layer < w.n_layer // 16,
    "first_eighth": lambda w: w.layer < w.n_layer // 8,
    "more_bits": lambda w: use_more_bits(w.layer, w.n_layer),
    "middle": lambda w: w.n_layer // 8 <= w.layer < 7 * w.n_layer // 8,
    "no_imatrix": lambda w: not w.has_imatrix,
    "first_eighth_no_imatrix": lambda w: not w.has_imatrix and w.layer < w.n_layer // 8,
    "first_eighth_or_8x_more_bits": lambda w: w.layer < w.n_layer // 8 or (w.n_expert == 8 and use_more_bits(w.layer, w.n_layer)),
    "first_eighth_counted": lambda w: w.down_index < w.n_layer // 8,
}


@dataclass(frozen=True)
class Mixture:
    """A llama-quantize ftype: its default type, and what it gives other categories: attn_output (`attn_output_8x`
    when the model has exactly 8 experts, llama.cpp's Mixtral special case), ordered (test, type) rules for ffn_down
    and for ffn_gate/ffn_up, output.weight (when its rows fit the default's blocks; Q8_0 otherwise), token_embd and
    attn_q (None: the default)."""

    default: str
    attn_output: str | None = None
    attn_output_8x: str | None = None
    ffn_down: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    output: str = "Q6_K"
    token_embd: str | None = None
    attn_q: str | None = None
    ffn_gate_up: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # attn_k (V3.2's indexer key) of a model with exactly 8 experts (llama_tensor_get_type_impl: "for the 8-expert
    # model, bumping this to Q8_0"); the very-low-bit branch comes first there and never sets it.
    attn_k_8x: str | None = "Q8_0"


def _very_low(default: str, embd: str, attn_output: str | None, down: str) -> Mixture:
    """llama.cpp's IQ1_S/IQ1_M/IQ2_XXS/IQ2_XS/IQ2_S/IQ2_M branch: output Q5_K, its own embd, attn_output and ffn_down."""
    return Mixture(default, attn_output=attn_output, attn_output_8x="Q5_K", ffn_down=(("first_eighth_counted", down),),
                   output="Q5_K", token_embd=embd, attn_k_8x=None)


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
    "IQ1_S": _very_low("IQ1_S", "Q2_K", "IQ2_XXS", "Q2_K"),
    "IQ1_M": _very_low("IQ1_M", "Q2_K", "IQ2_XXS", "Q2_K"),
    "IQ2_XXS": _very_low("IQ2_XXS", "Q2_K", None, "Q2_K"),
    "IQ2_XS": _very_low("IQ2_XS", "Q2_K", None, "Q2_K"),
    "IQ2_S": _very_low("IQ2_XS", "IQ3_S", "IQ3_S", "IQ3_S"),
    "IQ2_M": _very_low("IQ2_S", "IQ3_S", "IQ3_S", "IQ3_S"),
    "IQ3_XXS": Mixture("IQ3_XXS", attn_output="IQ3_S", attn_output_8x="Q5_K", output="Q5_K", token_embd="IQ3_S",
                       attn_q="IQ2_S", ffn_down=(("first_eighth_no_imatrix", "Q4_K"), ("no_imatrix", "Q3_K"))),
    "IQ3_XS": Mixture("IQ3_S", attn_output_8x="Q5_K", attn_q="IQ3_XXS", ffn_gate_up=(("middle", "IQ3_XXS"),)),
    "IQ3_S": Mixture("IQ3_S", attn_output_8x="Q5_K"),
    "IQ3_M": Mixture("IQ3_S", attn_output="Q4_K", attn_output_8x="Q5_K", ffn_down=(("first_eighth_or_8x_more_bits", "Q4_K"),)),
    "IQ4_NL": Mixture("IQ4_NL", attn_output_8x="Q5_K", ffn_down=(("first_eighth_no_imatrix", "Q5_K"),)),
    "IQ4_XS": Mixture("IQ4_XS", attn_output_8x="Q5_K", ffn_down=(("first_eighth_no_imatrix", "Q5_K"),)),
    "TQ1_0": Mixture("TQ1_0", token_embd="Q4_K"),
    "TQ2_0": Mixture("TQ2_0", token_embd="Q4_K"),
}


def layer_of(name: str, n_layer: int) -> int:
    """The layer index of a `blk.N.` tensor, checked against n_layer as llama.cpp does."""
    m = LAYER_RE.match(name)
    if not m:
        raise ValueError(f"{name}: cannot determine the layer (expected a blk.N. prefix)")
    i = int(m[1])
    if not 0 <= i < n_layer:
        raise ValueError(f"{name}: layer {i} outside [0, {n_layer})")
    return i


def _first(rules: tuple[tuple[str, str], ...], where: Where) -> str | None:
    return next((t for test, t in rules if LAYER_TESTS[test](where)), None)


def mixture_type(mix: Mixture, name: str, shape: tuple[int, ...], n_layer: int, n_expert: int = 0,
                 has_imatrix: bool = False, down_index: int = 0) -> str:
    """The type llama-quantize gives tensor `name` (numpy shape) under `mix`, before the row-length fallback.
    `down_index`: the tensor's position among the ffn_down tensors in name order (see `down_positions`)."""
    cat = category(name)
    if cat == "output":
        return "Q8_0" if shape[-1] % GGML_TYPES[mix.default].block else mix.output
    if cat == "token_embd":
        return mix.token_embd or mix.default
    if cat == "attn_k" and n_expert == 8 and mix.attn_k_8x:
        return mix.attn_k_8x
    if cat == "attn_output":
        bump = mix.attn_output_8x if n_expert == 8 else mix.attn_output
        return bump or mix.default
    if cat == "attn_q":
        return mix.attn_q or mix.default
    if cat in ("ffn_down", "ffn_gate", "ffn_up"):
        rules = mix.ffn_down if cat == "ffn_down" else mix.ffn_gate_up
        if rules:
            where = Where(layer_of(name, n_layer), n_layer, n_expert, has_imatrix, down_index)
            return _first(rules, where) or mix.default
    return mix.default


def down_positions(names: list[str]) -> dict[str, int]:
    """Each ffn_down tensor's position in llama-quantize's processing order (its tensor map: sorted by name)."""
    return {n: i for i, n in enumerate(sorted(n for n in names if category(n) == "ffn_down"))}


def _make(mix: Mixture) -> Callable[[SchemeContext], TypeFn]:
    def make(ctx: SchemeContext) -> TypeFn:
        n_layer, n_expert = ctx.n_layer, int(ctx.config.get("n_routed_experts") or 0)
        down = down_positions([n for n, _ in ctx.tensors])
        return lambda name, shape: mixture_type(mix, name, shape, n_layer, n_expert, ctx.has_imatrix, down.get(name, 0))

    return make


for _name, _mix in MIXTURES.items():
    register_scheme(_name)(_make(_mix))
