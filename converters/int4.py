"""Block-FP8 (or BF16) -> INT4 weight-only (W4A16) for vLLM / SGLang: compressed-tensors `pack-quantized`,
GPTQ (v1, `desc_act: false`) or AWQ (GEMM).

Per weight in scope: exact fp32 values (FP8 * scale_inv, or the float weight upcast) -> group quantize
-> pack (`quant.int4`). Linear weights out of scope become BF16 (FP8 dequantized, round to nearest even);
everything else is copied. Output shards keep the input's names and tensor order, so a run streams one
tensor at a time and resumes shard by shard. config.json gets the format's `quantization_config`,
which names every linear module left out.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from dshub.arch import spec_for
from dshub.arch.spec import Role, TensorSpec
from dshub.checkpoint.reader import Checkpoint, read_entry
from dshub.errors import CheckpointError, DshubError, QuantizationError, UsageError
from dshub.formats.int4_config import module_of
from dshub.checkpoint.writer import TORCH_TO_ST, TensorDecl, shard_size, write_shard
from dshub.quant import get_codec
from dshub.quant.int4 import GROUP_SIZES, Int4Error, get_format, packed_layout, scheme_for

from dshub.converters.base import Advance, ConversionOptions, ConversionPlan, Converter, OutputFile, copy_sidecars, register_converter, write_index_and_config
from dshub.converters.bf16 import FP8_DTYPES, SHARD_METADATA, bf16_config, mtp_tensor_names, scale_name
from dshub.converters.pipeline import TensorPipeline

FLOAT_DTYPES = ("BF16", "F16", "F32")
# Which linear roles each --scope turns into INT4. Routers, norms, embeddings, lm_head and MTP extras never.
SCOPES: dict[str, frozenset[Role]] = {
    "experts": frozenset({Role.EXPERT}),
    "mlp": frozenset({Role.EXPERT, Role.SHARED_EXPERT, Role.DENSE_MLP}),
    "all-linear": frozenset({Role.EXPERT, Role.SHARED_EXPERT, Role.DENSE_MLP, Role.ATTN}),
}
DEFAULTS: dict[str, Any] = {"format": "compressed-tensors", "group_size": 128, "symmetric": True, "scope": "experts", "ignore": []}
# config.json quant_method values / tensor suffixes that mean "this checkpoint is already low-bit"
INT4_METHODS = ("compressed-tensors", "gptq", "awq", "gptq_marlin", "awq_marlin", "moe_wna16", "bitsandbytes", "hqq", "exl2")
INT4_SUFFIXES = (".weight_packed", ".qweight")
CT_VERSION = "0.20.0"  # the compressed-tensors release whose pack-quantized layout this writer follows


@dataclass(frozen=True)
class Action:
    """How one output tensor is produced: copy, dequantize to bf16, or one packed piece of an INT4 weight."""

    source: str  # input tensor name
    kind: str  # "copy" | "bf16" | "int4"
    suffix: str = ""  # int4: which packed tensor


# ------------------------------------------------------------------ options
def normalize_params(params: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults, reject unknown or inconsistent options (UsageError, exit 2)."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"--to int4 takes no option(s) {', '.join(unknown)}; it takes --format, --group-size, --symmetric/--asymmetric, --scope, --ignore")
    p = {**DEFAULTS, **params}
    if p["scope"] not in SCOPES:
        raise UsageError(f"--scope {p['scope']!r}: choose one of {', '.join(SCOPES)}")
    if p["group_size"] not in GROUP_SIZES:
        raise UsageError(f"--group-size {p['group_size']}: choose one of {', '.join(map(str, GROUP_SIZES))} (what the engines' INT4 kernels run)")
    p["ignore"] = list(p["ignore"] or [])
    for pat in p["ignore"]:
        try:
            re.compile(pat)
        except re.error as e:
            raise UsageError(f"--ignore {pat!r}: not a valid regular expression ({e})") from None
    try:
        scheme_for(p["format"], p["group_size"], p["symmetric"])
    except Int4Error as e:
        raise UsageError(f"--format {p['format']}: {e}") from None
    return p


def in_scope(t: TensorSpec, scope: str, ignore: list[re.Pattern[str]]) -> bool:
    """Does weight `t` become INT4? Linear, a role the scope lists, not an MTP extra, no --ignore match."""
    if not (t.linear and t.name.endswith(".weight") and t.role in SCOPES[scope]):
        return False
    return not any(p.search(module_of(t.name)) for p in ignore)


def refuse_int4_input(ckpt: Checkpoint) -> None:
    method = (ckpt.config.get("quantization_config") or {}).get("quant_method")
    if method in INT4_METHODS:
        raise CheckpointError(f"config.json: the checkpoint is already quantized (quant_method {method!r}); "
                              "convert from the FP8 or BF16 release", path=str(ckpt.root / "config.json"))
    packed = next((n for n in ckpt.weight_map if n.endswith(INT4_SUFFIXES)), None)
    if packed:
        raise CheckpointError(f"{ckpt.weight_map[packed]}: tensor {packed}: the checkpoint already holds packed INT4 weights; "
                              "convert from the FP8 or BF16 release", path=ckpt.weight_map[packed], tensor=packed)


# ------------------------------------------------------------------ quantization_config per format
def collapse_left_out(left_out: list[str], linear: list[str]) -> list[str]:
    """Left-out modules as the engines' substring / prefix-regex skip lists need them: a module is replaced by
    `ancestor.` when every linear module under that ancestor is left out, so the names an engine gives its fused
    layers (`self_attn.fused_qkv_a_proj`, `mlp.gate_up_proj`, `shared_experts.gate_up_proj`) are covered too."""
    total: dict[str, int] = {}
    kept: dict[str, int] = {}
    out_set = set(left_out)
    for m in linear:
        parts = m.split(".")
        for i in range(1, len(parts)):
            a = ".".join(parts[:i])
            total[a] = total.get(a, 0) + 1
            kept[a] = kept.get(a, 0) + (m in out_set)
    result = set()
    for m in left_out:
        parts = m.split(".")
        ancestors = (".".join(parts[:i]) for i in range(1, len(parts)))
        whole = next((a for a in ancestors if total.get(a) == kept.get(a)), None)
        result.add(f"{whole}." if whole else m)
    return sorted(result)


def skip_regex(entries: list[str]) -> str:
    """One anchored regex matching module names by the collapsed entries (`x.` = prefix, else the exact name)."""
    alts = [re.escape(e) if e.endswith(".") else re.escape(e) + "$" for e in entries]
    return "^(?:" + "|".join(alts) + ")"


def ct_config(p: dict[str, Any], left_out: list[str], linear: list[str]) -> dict[str, Any]:
    weights = {"num_bits": 4, "type": "int", "symmetric": p["symmetric"], "group_size": p["group_size"],
               "strategy": "group", "dynamic": False, "actorder": None, "observer": "minmax"}
    return {"quant_method": "compressed-tensors", "format": "pack-quantized", "quantization_status": "compressed",
            "version": CT_VERSION,
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": None,
                                          "output_activations": None, "format": "pack-quantized"}},
            "ignore": sorted(left_out), "kv_cache_scheme": None, "global_compression_ratio": None,
            "sparsity_config": {}, "transform_config": {}}


def gptq_config(p: dict[str, Any], left_out: list[str], linear: list[str]) -> dict[str, Any]:
    # GPTQModel / vLLM `dynamic`: a "-:" key is a regex (re.match) of modules that stay unquantized.
    skip = collapse_left_out(left_out, linear)
    return {"quant_method": "gptq", "bits": 4, "group_size": p["group_size"], "desc_act": False, "sym": True,
            "static_groups": False, "true_sequential": True, "lm_head": False, "checkpoint_format": "gptq",
            "dynamic": {f"-:{skip_regex(skip)}": {}} if skip else {}}


def awq_config(p: dict[str, Any], left_out: list[str], linear: list[str]) -> dict[str, Any]:
    # AutoAWQ / vLLM / SGLang skip a module when any entry is a substring of its name.
    return {"quant_method": "awq", "bits": 4, "group_size": p["group_size"], "zero_point": True, "version": "gemm",
            "modules_to_not_convert": collapse_left_out(left_out, linear)}


QUANT_CONFIGS: dict[str, Callable[[dict[str, Any], list[str], list[str]], dict[str, Any]]] = {
    "compressed-tensors": ct_config, "gptq": gptq_config, "awq": awq_config,
}


def int4_config(config: dict[str, Any], p: dict[str, Any], left_out: list[str], linear: list[str], drop_mtp: bool) -> dict[str, Any]:
    cfg = bf16_config(config, drop_mtp)
    cfg["quantization_config"] = QUANT_CONFIGS[p["format"]](p, left_out, linear)
    return cfg


def mixed_moe_layers(experts: dict[int, set[bool]]) -> list[str]:
    """Warnings for MoE layers whose routed experts are partly INT4: fused-MoE kernels take one precision per layer."""
    return [f"layer {layer}: some routed-expert weights are INT4 and some BF16; vLLM/SGLang fused-MoE kernels need one "
            f"precision per layer (ignore the whole layer's experts, e.g. --ignore 'layers\\.{layer}\\.mlp\\.experts\\.')"
            for layer, flags in sorted(experts.items()) if len(flags) > 1]


# ------------------------------------------------------------------ converter
@register_converter("int4")
class Int4Converter(Converter):
    """Routed experts (or a wider --scope) to INT4 weight-only; the rest BF16 or copied."""

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return normalize_params(params)

    def check_source(self, src: Path) -> None:
        try:
            ckpt = Checkpoint.open(src)
        except DshubError:
            return  # structural verification reports it
        refuse_int4_input(ckpt)

    def plan(self, ckpt: Checkpoint, opts: ConversionOptions) -> ConversionPlan:
        refuse_int4_input(ckpt)
        p = opts.params
        fmt = p["format"]
        scheme = scheme_for(fmt, p["group_size"], p["symmetric"])
        spec = spec_for(ckpt.config).by_name
        ignore = [re.compile(x) for x in p["ignore"]]
        drop = mtp_tensor_names(ckpt) if opts.drop_mtp else set()
        files: list[OutputFile] = []
        quantized: list[str] = []
        left_out: list[str] = []
        linear: list[str] = []
        experts: dict[int, set[bool]] = {}
        int4_bytes = 0
        for shard in ckpt.shard_names:
            decls: list[TensorDecl] = []
            actions: dict[str, Action] = {}
            for e in ckpt.tensors_in(shard):
                if e.name.endswith("_scale_inv") or e.name in drop:
                    continue
                t = spec.get(e.name)
                if t is not None and t.linear and t.name.endswith(".weight"):
                    linear.append(module_of(e.name))
                quantize = t is not None and in_scope(t, p["scope"], ignore) and e.dtype in FP8_DTYPES + FLOAT_DTYPES
                if t is not None and t.role is Role.EXPERT and t.layer is not None:
                    experts.setdefault(t.layer, set()).add(quantize)
                if quantize:
                    mod = module_of(e.name)
                    try:
                        layout = packed_layout(fmt, tuple(e.shape), scheme)  # type: ignore[arg-type]
                    except Int4Error as err:
                        raise QuantizationError(f"{shard}: tensor {e.name}: {err}; pick another --group-size or --ignore "
                                                f"'{re.escape(mod)}'", path=shard, tensor=e.name) from None
                    for suffix, dtype, shape in layout:
                        d = TensorDecl(f"{mod}.{suffix}", TORCH_TO_ST[dtype], shape)
                        decls.append(d)
                        actions[d.name] = Action(e.name, "int4", suffix)
                        int4_bytes += d.nbytes
                    quantized.append(mod)
                    continue
                if t is not None and t.linear and t.name.endswith(".weight"):
                    left_out.append(module_of(e.name))
                fp8 = e.dtype in FP8_DTYPES
                decls.append(TensorDecl(e.name, "BF16" if fp8 else e.dtype, e.shape))
                actions[e.name] = Action(e.name, "bf16" if fp8 else "copy")
            if decls:
                files.append(OutputFile(shard, shard_size(decls, SHARD_METADATA), len(decls), (decls, actions)))
        if not quantized:
            raise UsageError(f"--scope {p['scope']} with the given --ignore selects no weight to quantize in {ckpt.root}")
        warnings = mixed_moe_layers(experts)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        summary = {"format": fmt, "group_size": p["group_size"], "symmetric": p["symmetric"], "scope": p["scope"],
                   "ignore": p["ignore"], "quantized_weights": len(quantized), "left_out_linear": sorted(left_out), "linear_modules": len(linear), "warnings": warnings,
                   "int4_bytes": int4_bytes, "dropped_mtp_tensors": len(drop)}
        return ConversionPlan("int4", ckpt.root, opts.out, files, summary=summary)

    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ConversionOptions, f: OutputFile, advance: Advance) -> str:
        decls, actions = f.data
        entries = {e.name: e for e in ckpt.tensors_in(f.name)}
        path = ckpt.shard_path(f.name)
        p = opts.params
        dev = plan.device
        pack = get_codec(get_format(p["format"]).codec, dev)
        scheme = scheme_for(p["format"], p["group_size"], p["symmetric"])
        block = ckpt.encoding.block or (128, 128)
        to_bf16 = get_codec("fp8_block_dequant_bf16_rows" if dev == "cpu" else "fp8_block_dequant_bf16", dev)
        quant_fp8, quant_float = get_codec("int4_quantize_fp8", dev), get_codec("int4_quantize", dev)
        kinds = {a.source: a.kind for a in actions.values()}
        units = list(dict.fromkeys(actions[d.name].source for d in decls))  # one per input tensor, in file order

        def load(name: str) -> tuple[torch.Tensor, ...]:
            w = read_entry(path, entries[name])
            return (w, ckpt.read(scale_name(name))) if kinds[name] != "copy" and w.element_size() == 1 else (w,)

        def compute(name: str, ins: tuple[torch.Tensor, ...]) -> Any:
            if kinds[name] == "copy":
                return ins[0]
            if kinds[name] == "bf16":  # out-of-scope FP8 weight: BF16, streamed by row blocks on the CPU
                return to_bf16(ins[0], ins[1], block)
            try:  # INT4: every packed piece of the module at once
                t = quant_fp8(*ins, scheme, block) if len(ins) == 2 else quant_float(ins[0], scheme)
                return dict(pack(t))
            except Int4Error as err:
                raise QuantizationError(f"{f.name}: tensor {name}: {err}", path=f.name, tensor=name) from None

        # The next input tensor is read (and, on a GPU, staged) while this one is computed; results arrive in order.
        results = TensorPipeline(load, compute, dev, stage=lambda name: kinds[name] != "copy").map(units)
        current: dict[str, Any] = {}

        def produce(d: TensorDecl) -> Any:
            a: Action = actions[d.name]
            if current.get("name") != a.source:
                name, value = next(results)
                if name != a.source:
                    raise RuntimeError(f"pipeline produced {name} while {a.source} was asked for")
                current.update(name=name, value=value)
            return current["value"].pop(a.suffix) if a.kind == "int4" else current["value"]

        try:
            return write_shard(opts.out / f.name, decls, produce, SHARD_METADATA, on_tensor=lambda d: advance(d.nbytes))
        finally:
            results.close()  # stops the reader thread, also when a tensor fails

    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ConversionOptions) -> None:
        weight_map = {d.name: f.name for f in plan.files for d in f.data[0]}
        total = sum(d.nbytes for f in plan.files for d in f.data[0])
        copy_sidecars(ckpt.root, opts.out)
        drop = mtp_tensor_names(ckpt) if opts.drop_mtp else set()
        linear = [module_of(t.name) for t in spec_for(ckpt.config) if t.linear and t.name.endswith(".weight") and t.name not in drop]
        cfg = int4_config(ckpt.config, opts.params, plan.summary["left_out_linear"], linear, opts.drop_mtp)
        write_index_and_config(opts.out, weight_map, total, cfg)
