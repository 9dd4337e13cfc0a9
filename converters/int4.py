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
from typing import Any

import torch

from dshub.arch import family_for, spec_for
from dshub.arch.family import MOE_INT4_SCOPES
from dshub.arch.spec import Role, TensorSpec, fp8_scale_name
from dshub.checkpoint.reader import Checkpoint, read_entry
from dshub.errors import CheckpointError, DshubError, QuantizationError, UsageError
from dshub.formats.int4_config import module_of, quantization_config
from dshub.checkpoint.writer import TORCH_TO_ST, TensorDecl, shard_size, write_shard
from dshub.quant import get_codec
from dshub.quant.backends import default_chain
from dshub.quant.int4 import Int4Error, get_format, packed_layout, scheme_for

from dshub.converters.options import Int4Options
from dshub.converters.base import Advance, ConversionPlan, Converter, OutputFile, copy_sidecars, register_converter, write_index_and_config
from dshub.converters.bf16 import FP8_DTYPES, SHARD_METADATA, bf16_config, mtp_tensor_names
from dshub.converters.pipeline import TensorPipeline

FLOAT_DTYPES = ("BF16", "F16", "F32")
# Which linear roles each --scope turns into INT4 is the model family's (`Family.int4_scopes()`); this is the MoE
# default. Routers, norms, embeddings, lm_head and MTP extras are in no scope.
SCOPES = MOE_INT4_SCOPES
# config.json quant_method values / tensor suffixes that mean "this checkpoint is already low-bit"
INT4_METHODS = ("compressed-tensors", "gptq", "awq", "gptq_marlin", "awq_marlin", "moe_wna16", "bitsandbytes", "hqq", "exl2")
INT4_SUFFIXES = (".weight_packed", ".qweight")


@dataclass(frozen=True)
class Action:
    """How one output tensor is produced: copy, dequantize to bf16, or one packed piece of an INT4 weight."""

    source: str  # input tensor name
    kind: str  # "copy" | "bf16" | "int4"
    suffix: str = ""  # int4: which packed tensor


def in_scope(t: TensorSpec, scope: str, ignore: list[re.Pattern[str]], scopes=SCOPES) -> bool:
    """Does weight `t` become INT4? Linear, a role the (family's) scope lists, not an MTP extra, no --ignore match."""
    if not (t.linear and t.name.endswith(".weight") and t.role in scopes[scope]):
        return False
    return not any(p.search(module_of(t.name)) for p in ignore)


def refuse_int4_input(ckpt: Checkpoint) -> None:
    method = (ckpt.config.get("quantization_config") or {}).get("quant_method")
    if method in INT4_METHODS:
        raise CheckpointError(f"the checkpoint is already quantized (quant_method {method!r}); "
                              "convert from the FP8 or BF16 release", path=str(ckpt.root / "config.json"), show_path="config.json")
    packed = next((n for n in ckpt.weight_map if n.endswith(INT4_SUFFIXES)), None)
    if packed:
        raise CheckpointError("the checkpoint already holds packed INT4 weights; "
                              "convert from the FP8 or BF16 release", path=ckpt.weight_map[packed], tensor=packed)


def int4_output_config(config: dict[str, Any], opts: Int4Options, left_out: list[str], linear: list[str]) -> dict[str, Any]:
    """The output's config.json: the BF16 one plus the format's `quantization_config`."""
    cfg = bf16_config(config, opts.drop_mtp)
    cfg["quantization_config"] = quantization_config(opts.format, opts.group_size, opts.symmetric, left_out, linear)
    return cfg


def mixed_moe_layers(experts: dict[int, set[bool]]) -> list[str]:
    """Warnings for MoE layers whose routed experts are partly INT4: fused-MoE kernels take one precision per layer."""
    return [f"layer {layer}: some routed-expert weights are INT4 and some BF16; vLLM/SGLang fused-MoE kernels need one "
            f"precision per layer (ignore the whole layer's experts, e.g. --ignore 'layers\\.{layer}\\.mlp\\.experts\\.')"
            for layer, flags in sorted(experts.items()) if len(flags) > 1]


# ------------------------------------------------------------------ converter
@register_converter
class Int4Converter(Converter):
    """Routed experts (or a wider --scope) to INT4 weight-only; the rest BF16 or copied."""

    options = Int4Options

    def check_source(self, src: Path) -> None:
        try:
            ckpt = Checkpoint.open(src)
        except DshubError:
            return  # structural verification reports it
        refuse_int4_input(ckpt)

    def plan(self, ckpt: Checkpoint, opts: Int4Options) -> ConversionPlan:
        refuse_int4_input(ckpt)
        fmt = opts.format
        scheme = scheme_for(fmt, opts.group_size, opts.symmetric)
        spec = spec_for(ckpt.config).by_name
        family = family_for(ckpt.config)
        scopes = family.int4_scopes()  # UsageError for a family INT4 does not support
        scope = family.int4_scope(opts.scope)
        ignore = opts.ignore_patterns()
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
                quantize = t is not None and in_scope(t, scope, ignore, scopes) and e.dtype in FP8_DTYPES + FLOAT_DTYPES
                if t is not None and t.role is Role.EXPERT and t.layer is not None:
                    experts.setdefault(t.layer, set()).add(quantize)
                if quantize:
                    mod = module_of(e.name)
                    try:
                        layout = packed_layout(fmt, tuple(e.shape), scheme)  # type: ignore[arg-type]
                    except Int4Error as err:
                        raise QuantizationError(f"{err}; pick another --group-size or --ignore "
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
            raise UsageError(f"--scope {scope} with the given --ignore selects no weight to quantize in {ckpt.root}")
        warnings = mixed_moe_layers(experts)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        summary = {"format": fmt, "group_size": opts.group_size, "symmetric": opts.symmetric, "scope": scope,
                   "ignore": list(opts.ignore), "quantized_weights": len(quantized), "left_out_linear": sorted(left_out), "linear_modules": len(linear), "warnings": warnings,
                   "int4_bytes": int4_bytes, "dropped_mtp_tensors": len(drop)}
        return ConversionPlan("int4", ckpt.root, opts.out, files, summary=summary)

    def source_bytes(self, plan: ConversionPlan) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in plan.files:
            decls, actions = f.data
            for d in decls:
                out[actions[d.name].source] = out.get(actions[d.name].source, 0) + d.nbytes
        return out

    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: Int4Options, f: OutputFile, advance: Advance) -> str:
        decls, actions = f.data
        entries = {e.name: e for e in ckpt.tensors_in(f.name)}
        path = ckpt.shard_path(f.name)
        dev = plan.device
        pack = get_codec(get_format(opts.format).codec, dev)
        scheme = scheme_for(opts.format, opts.group_size, opts.symmetric)
        block = ckpt.encoding.block or (128, 128)
        to_bf16 = get_codec("fp8_block_dequant_bf16_rows" if dev == "cpu" else "fp8_block_dequant_bf16", dev, default_chain())
        quant_fp8, quant_float = get_codec("int4_quantize_fp8", dev), get_codec("int4_quantize", dev)
        kinds = {a.source: a.kind for a in actions.values()}
        units = list(dict.fromkeys(actions[d.name].source for d in decls))  # one per input tensor, in file order

        def load(name: str) -> tuple[torch.Tensor, ...]:
            w = read_entry(path, entries[name])
            return (w, ckpt.read(fp8_scale_name(name))) if kinds[name] != "copy" and w.element_size() == 1 else (w,)

        def compute(name: str, ins: tuple[torch.Tensor, ...]) -> Any:
            if kinds[name] == "copy":
                return ins[0]
            if kinds[name] == "bf16":  # out-of-scope FP8 weight: BF16, streamed by row blocks on the CPU
                return to_bf16(ins[0], ins[1], block)
            try:  # INT4: every packed piece of the module at once
                t = quant_fp8(*ins, scheme, block) if len(ins) == 2 else quant_float(ins[0], scheme)
                return dict(pack(t))
            except Int4Error as err:
                raise QuantizationError(str(err), path=f.name, tensor=name) from None

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

    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: Int4Options) -> None:
        weight_map = {d.name: f.name for f in plan.files for d in f.data[0]}
        total = sum(d.nbytes for f in plan.files for d in f.data[0])
        copy_sidecars(ckpt.root, opts.out)
        drop = mtp_tensor_names(ckpt) if opts.drop_mtp else set()
        linear = [module_of(t.name) for t in spec_for(ckpt.config) if t.linear and t.name.endswith(".weight") and t.name not in drop]
        cfg = int4_output_config(ckpt.config, opts, plan.summary["left_out_linear"], linear)
        write_index_and_config(opts.out, weight_map, total, cfg)
