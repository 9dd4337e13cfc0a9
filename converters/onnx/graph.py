"""The ONNX decoder graph onnxruntime-genai runs, built directly with the `onnx` package from shapes alone.

Per layer: RMSNorm (ONNX `RMSNormalization` for the first, onnxruntime's `SkipSimplifiedLayerNormalization` after,
which also returns the residual sum) -> q/k/v projections (+ biases) -> `GroupQueryAttention` (com.microsoft; rotary
inside it from cos/sin caches, half-split rotary as transformers' `rotate_half`; KV cache in and out) -> o
projection -> SkipSimplifiedLayerNormalization -> SwiGLU MLP. Projections are `MatMul` on transposed weights
(fp32/fp16) or `MatMulNBits` (int4). Inputs and outputs are named as onnxruntime-genai's model builder names them
(`input_ids`, `attention_mask`, `past_key_values.N.key|value` -> `logits`, `present.N.key|value`).

Facts: onnxruntime docs/ContribOperators.md (GroupQueryAttention inputs: query, key, value, past_key, past_value,
seqlens_k = mask row sums - 1 as int32, total_sequence_length as an int32 scalar, cos_cache, sin_cache;
SkipSimplifiedLayerNormalization outputs: output, mean, inv_std_var, input_skip_bias_sum; MatMulNBits), and
onnxruntime-genai's builder (`make_attention_mask_reformatting_for_gqa`, genai_config inputs/outputs).
Weights are external data: every initializer names its file, offset and length (`Initializer`), planned here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import onnx
from onnx import TensorProto, helper

from dshub.arch.family import DecoderFacts
from dshub.arch.spec import ArchSpec

OPSETS = (("", 23), ("com.microsoft", 1))  # RMSNormalization is ONNX opset 23
BIG_TENSOR = 1 << 20  # tensors at least this big start on a 4096-byte boundary (as onnx's own external-data writer)
ALIGN_BIG, ALIGN_SMALL = 4096, 64
ELEM_BYTES = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2, TensorProto.UINT8: 1}
IO_TYPE = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16, "int4": TensorProto.FLOAT}
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Initializer:
    """One weight in external data: how it is produced (`kind`), from which input tensor, and where it lands."""

    name: str
    elem: int  # TensorProto element type
    shape: tuple[int, ...]
    kind: str  # "transpose" | "cast" | "nbits" | "rope_cos" | "rope_sin"
    source: str = ""  # input tensor name ("" for the rope caches)
    part: str = ""  # nbits: B | scales | zero_points
    layer: int | None = None  # which data file (None: the model-wide one)
    file: str = ""
    offset: int = 0

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ELEM_BYTES[self.elem]


@dataclass(frozen=True)
class GraphSpec:
    """What the graph depends on: the config's dimensions and the options (precision, block size, symmetry)."""

    config: dict[str, Any]
    facts: DecoderFacts
    spec: ArchSpec
    precision: str
    block_size: int
    symmetric: bool

    @property
    def io(self) -> int:
        return IO_TYPE[self.precision]

    def dim(self, key: str) -> int:
        return int(self.config[key])


def _linear(g: GraphSpec, weight: str, layer: int | None, quantize: bool) -> list[Initializer]:
    """The initializers of one linear layer: a transposed [in, out] weight, or MatMulNBits' B / scales / zeros."""
    out, k = g.spec.by_name[weight].shape
    base = weight[: -len(".weight")]
    if not quantize:
        return [Initializer(f"{base}.weight_t", g.io, (k, out), "transpose", weight, layer=layer)]
    nb = k // g.block_size
    parts = [Initializer(f"{base}.MatMulNBits.B", TensorProto.UINT8, (out, nb, g.block_size // 2), "nbits", weight, "B", layer),
             Initializer(f"{base}.MatMulNBits.scales", TensorProto.FLOAT, (out * nb,), "nbits", weight, "scales", layer)]
    if not g.symmetric:
        parts.append(Initializer(f"{base}.MatMulNBits.zero_points", TensorProto.UINT8, (out * ((nb + 1) // 2),), "nbits",
                                 weight, "zero_points", layer))
    return parts


def plan_initializers(g: GraphSpec) -> list[Initializer]:
    """Every initializer in graph order, not yet placed in files."""
    names = g.spec.by_name
    hd, max_pos = g.facts.head_dim(g.config), g.dim("max_position_embeddings")
    quant = g.precision == "int4"
    inits = [Initializer("model.embed_tokens.weight", g.io, names["model.embed_tokens.weight"].shape, "cast", "model.embed_tokens.weight"),
             Initializer("cos_cache", g.io, (max_pos, hd // 2), "rope_cos"),
             Initializer("sin_cache", g.io, (max_pos, hd // 2), "rope_sin")]
    for i in range(g.spec.num_layers):
        p = f"model.layers.{i}."
        inits.append(Initializer(p + "input_layernorm.weight", g.io, names[p + "input_layernorm.weight"].shape, "cast", p + "input_layernorm.weight", layer=i))
        for proj in PROJECTIONS:
            inits += _linear(g, f"{p}self_attn.{proj}.weight", i, quant)
            bias = f"{p}self_attn.{proj}.bias"
            if bias in names:
                inits.append(Initializer(bias, g.io, names[bias].shape, "cast", bias, layer=i))
        inits.append(Initializer(p + "post_attention_layernorm.weight", g.io, names[p + "post_attention_layernorm.weight"].shape, "cast",
                                 p + "post_attention_layernorm.weight", layer=i))
        for proj in MLP:
            inits += _linear(g, f"{p}mlp.{proj}.weight", i, quant)
    inits.append(Initializer("model.norm.weight", g.io, names["model.norm.weight"].shape, "cast", "model.norm.weight"))
    head = "model.embed_tokens.weight" if g.facts.tied_embeddings(g.config) else "lm_head.weight"
    vocab, hidden = names[head].shape
    inits.append(Initializer("lm_head.weight_t", g.io, (hidden, vocab), "transpose", head))  # lm_head stays unquantized
    return inits


def place(inits: list[Initializer], file_of: Callable[[int | None], str]) -> list[Initializer]:
    """Give each initializer its data file and aligned offset (files in the order they are first used)."""
    ends: dict[str, int] = {}
    out = []
    for t in inits:
        f = file_of(t.layer)
        align = ALIGN_BIG if t.nbytes >= BIG_TENSOR else ALIGN_SMALL
        off = -(-ends.get(f, 0) // align) * align
        ends[f] = off + t.nbytes
        out.append(Initializer(**{**t.__dict__, "file": f, "offset": off}))
    return out


def external(t: Initializer) -> TensorProto:
    """The TensorProto of an external-data initializer (no bytes inline)."""
    p = TensorProto(name=t.name, data_type=t.elem, dims=list(t.shape))
    p.data_location = TensorProto.EXTERNAL
    for k, v in (("location", t.file), ("offset", str(t.offset)), ("length", str(t.nbytes))):
        entry = p.external_data.add()
        entry.key, entry.value = k, v
    return p


class _Nodes:
    """Node list with unique, readable output names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []

    def add(self, op: str, inputs: list[str], name: str, n_out: int = 1, domain: str = "", outs: list[str] | None = None,
            **attrs: Any) -> list[str]:
        """Append one node; its outputs are `outs` (graph outputs), else `<name>/output_<j>`."""
        outs = outs or [f"{name}/output_{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return outs

    def const(self, name: str, elem: int, dims: list[int], vals: list[Any]) -> str:
        return self.add("Constant", [], name, value=helper.make_tensor(name, elem, dims, vals))[0]


def build_model(g: GraphSpec, inits: list[Initializer]) -> onnx.ModelProto:
    """The decoder graph over placed initializers."""
    c, f = g.config, g.facts
    heads, kvh, hd = g.dim("num_attention_heads"), f.kv_heads(c), f.head_dim(c)
    eps, vocab = float(c.get("rms_norm_eps", 1e-6)), g.dim("vocab_size")
    have = {t.name for t in inits}
    n = _Nodes()

    def linear(x: str, weight: str) -> str:
        base = weight[: -len(".weight")]
        if base + ".weight_t" in have:
            y = n.add("MatMul", [x, base + ".weight_t"], f"/{base}/MatMul")[0]
        else:
            out, k = g.spec.by_name[weight].shape
            ins = [x, f"{base}.MatMulNBits.B", f"{base}.MatMulNBits.scales"]
            if f"{base}.MatMulNBits.zero_points" in have:
                ins.append(f"{base}.MatMulNBits.zero_points")
            y = n.add("MatMulNBits", ins, f"/{base}/MatMulNBits", domain="com.microsoft", K=k, N=out, bits=4,
                      block_size=g.block_size, accuracy_level=0)[0]
        if base + ".bias" in have:
            y = n.add("Add", [y, base + ".bias"], f"/{base}/Add")[0]
        return y

    # attention mask -> GQA's seqlens_k (row sums - 1, int32) and total_sequence_length (int32 scalar)
    axes = n.const("/mask/axes", TensorProto.INT64, [1], [1])
    one = n.const("/mask/one", TensorProto.INT64, [], [1])
    summed = n.add("ReduceSum", ["attention_mask", axes], "/mask/ReduceSum", keepdims=0)[0]
    minus = n.add("Sub", [summed, one], "/mask/Sub")[0]
    seqlens = n.add("Cast", [minus], "/mask/seqlens_k", to=TensorProto.INT32)[0]
    shape = n.add("Shape", ["attention_mask"], "/mask/Shape")[0]
    total64 = n.add("Gather", [shape, one], "/mask/Gather", axis=0)[0]
    total = n.add("Cast", [total64], "/mask/total_seq_len", to=TensorProto.INT32)[0]

    h = n.add("Gather", ["model.embed_tokens.weight", "input_ids"], "/model/embed_tokens/Gather")[0]
    residual, pending = h, ""
    for i in range(g.spec.num_layers):
        p = f"model.layers.{i}."
        if i == 0:
            x = n.add("RMSNormalization", [h, p + "input_layernorm.weight"], f"/{p}input_layernorm", axis=-1, epsilon=eps)[0]
        else:
            x, _, _, residual = n.add("SkipSimplifiedLayerNormalization", [pending, residual, p + "input_layernorm.weight"],
                                      f"/{p}input_layernorm", n_out=4, domain="com.microsoft", epsilon=eps)
        q, k, v = (linear(x, f"{p}self_attn.{x_}_proj.weight") for x_ in "qkv")
        attn = n.add("GroupQueryAttention", [q, k, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value",
                                             seqlens, total, "cos_cache", "sin_cache"],
                     f"/{p}self_attn/GroupQueryAttention", domain="com.microsoft",
                     outs=[f"/{p}self_attn/GroupQueryAttention/output_0", f"present.{i}.key", f"present.{i}.value"],
                     num_heads=heads, kv_num_heads=kvh, do_rotary=1, rotary_interleaved=0, scale=1.0 / math.sqrt(hd),
                     local_window_size=-1)[0]
        o = linear(attn, f"{p}self_attn.o_proj.weight")
        x, _, _, residual = n.add("SkipSimplifiedLayerNormalization", [o, residual, p + "post_attention_layernorm.weight"],
                                  f"/{p}post_attention_layernorm", n_out=4, domain="com.microsoft", epsilon=eps)
        gate, up = linear(x, f"{p}mlp.gate_proj.weight"), linear(x, f"{p}mlp.up_proj.weight")
        sig = n.add("Sigmoid", [gate], f"/{p}mlp/Sigmoid")[0]
        act = n.add("Mul", [gate, sig], f"/{p}mlp/SiLU")[0]
        pending = linear(n.add("Mul", [act, up], f"/{p}mlp/Mul")[0], f"{p}mlp.down_proj.weight")
    x = n.add("SkipSimplifiedLayerNormalization", [pending, residual, "model.norm.weight"], "/model/norm", n_out=1,
              domain="com.microsoft", epsilon=eps)[0]
    n.add("MatMul", [x, "lm_head.weight_t"], "/lm_head/MatMul", outs=["logits"])

    kv_past = ["batch_size", kvh, "past_sequence_length", hd]
    kv_present = ["batch_size", kvh, "total_sequence_length", hd]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"])]
    outputs = [helper.make_tensor_value_info("logits", g.io, ["batch_size", "sequence_length", vocab])]
    for i in range(g.spec.num_layers):
        inputs += [helper.make_tensor_value_info(f"past_key_values.{i}.{kv}", g.io, kv_past) for kv in ("key", "value")]
        outputs += [helper.make_tensor_value_info(f"present.{i}.{kv}", g.io, kv_present) for kv in ("key", "value")]
    graph = helper.make_graph(n.nodes, "main_graph", inputs, outputs, [external(t) for t in inits])
    opsets = [helper.make_opsetid(d, v) for d, v in OPSETS]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="dshub",
                              ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True))
    return model
