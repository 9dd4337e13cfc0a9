"""Block-FP8 / MXFP4 -> BF16: same shards and tensor order, scales consumed, `quantization_config` removed.

FP8 weights: bf16(fp32(e4m3) x fp32(scale)) per 128x128 block (F32 or e8m0 scales); MXFP4 weights (DeepSeek-V4's
routed experts): bf16(e2m1 x 2^(e-127)) per 32 inputs. Both products are exact in fp32; only the bf16 rounding
remains (round to nearest even)."""
from __future__ import annotations

from typing import Any, Iterator

import torch

from dshub.arch import spec_for
from dshub.arch.spec import MXFP4_CODE_DTYPES, ArchSpec, fp8_scale_name
from dshub.checkpoint.reader import Checkpoint, read_entry
from dshub.checkpoint.header import TensorEntry
from dshub.checkpoint.writer import TensorDecl, shard_size, write_shard
from dshub.quant import get_codec
from dshub.quant.backends import default_chain

from dshub.converters.pipeline import TensorPipeline, ordered_producer
from dshub.converters.options import Bf16Options
from dshub.converters.base import Advance, ConversionPlan, Converter, OutputFile, copy_sidecars, register_converter, write_index_and_config

FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
SHARD_METADATA = {"format": "pt"}


def mtp_tensor_names(ckpt: Checkpoint) -> set[str]:
    return {t.name for t in spec_for(ckpt.config) if t.mtp}


def scale_names(spec: ArchSpec) -> dict[str, str]:
    """weight -> its scale tensor, for every weight the family stores with a scale (FP8 or MXFP4)."""
    return {t.name: t.scale_name for t in spec if t.quantized}


def is_mxfp4(spec: ArchSpec, e: TensorEntry) -> bool:
    t = spec.by_name.get(e.name)
    return t is not None and t.mxfp4 and e.dtype in MXFP4_CODE_DTYPES


@register_converter
class Bf16Converter(Converter):
    """Dequantize every block-FP8 weight to bf16 (round to nearest even); copy everything else unchanged."""

    options = Bf16Options

    def plan(self, ckpt: Checkpoint, opts: Bf16Options) -> ConversionPlan:
        spec = spec_for(ckpt.config)
        drop = {t.name for t in spec if t.mtp} if opts.drop_mtp else set()
        scales = set(scale_names(spec).values())
        files: list[OutputFile] = []
        n_fp8 = n_mx = 0
        for shard in ckpt.shard_names:
            entries = ckpt.tensors_in(shard)
            decls: list[TensorDecl] = []
            sources: list[TensorEntry] = []
            for e in entries:
                if e.name.endswith("_scale_inv") or e.name in scales or e.name in drop:
                    continue
                mx = is_mxfp4(spec, e)
                is_fp8 = e.dtype in FP8_DTYPES
                n_fp8 += is_fp8
                n_mx += mx
                shape = (*e.shape[:-1], 2 * e.shape[-1]) if mx else e.shape
                decls.append(TensorDecl(e.name, "BF16" if is_fp8 or mx else e.dtype, shape))
                sources.append(e)
            if decls:
                files.append(OutputFile(shard, shard_size(decls, SHARD_METADATA), len(decls), (decls, sources)))
        summary = {"fp8_weights": n_fp8, "dropped_mtp_tensors": len(drop)}
        if n_mx:
            summary["mxfp4_weights"] = n_mx
        return ConversionPlan("bf16", ckpt.root, opts.out, files, summary=summary)

    def source_bytes(self, plan: ConversionPlan) -> dict[str, int]:
        return {d.name: d.nbytes for f in plan.files for d in f.data[0]}

    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: Bf16Options, f: OutputFile, advance: Advance) -> str:
        decls, sources = f.data
        src = {e.name: e for e in sources}
        path = ckpt.shard_path(f.name)
        block = ckpt.encoding.block or (128, 128)
        # On the CPU a weight streams out one row block at a time; a GPU kernel works on the whole tensor.
        dequant = get_codec("fp8_block_dequant_bf16_rows" if plan.device == "cpu" else "fp8_block_dequant_bf16", plan.device,
                            default_chain())
        dequant_mx = get_codec("mxfp4_dequant_bf16", plan.device)
        spec = spec_for(ckpt.config)
        scales = scale_names(spec)
        mx = {e.name for e in sources if is_mxfp4(spec, e)}

        def load(d: TensorDecl) -> tuple[torch.Tensor, ...]:
            e = src[d.name]
            w = read_entry(path, e)
            if e.dtype in FP8_DTYPES:  # e8m0 scales widen exactly to fp32
                return w, ckpt.read(scales.get(d.name) or fp8_scale_name(d.name)).to(torch.float32)
            return (w, ckpt.read(scales[d.name])) if d.name in mx else (w,)

        def compute(d: TensorDecl, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | Iterator[torch.Tensor]:
            if d.name in mx:
                return dequant_mx(inputs[0], inputs[1])
            return dequant(inputs[0], inputs[1], block) if len(inputs) == 2 else inputs[0]

        # On a GPU the next tensor is read and staged while this one is dequantized. On the CPU the workers already
        # overlap reads with compute across files, so no read-ahead: memory stays at about the current FP8 input.
        depth = 1 if plan.device == "cpu" else 2
        pipe = TensorPipeline(load, compute, plan.device, depth=depth,
                              stage=lambda d: src[d.name].dtype in FP8_DTYPES or d.name in mx)
        produce = ordered_producer(pipe.map(decls))
        return write_shard(opts.out / f.name, decls, produce, SHARD_METADATA, on_tensor=lambda d: advance(d.nbytes))

    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: Bf16Options) -> None:
        weight_map = {d.name: f.name for f in plan.files for d in f.data[0]}
        total = sum(d.nbytes for f in plan.files for d in f.data[0])
        copy_sidecars(ckpt.root, opts.out)
        write_index_and_config(opts.out, weight_map, total, bf16_config(ckpt.config, opts.drop_mtp))


def bf16_config(config: dict[str, Any], drop_mtp: bool) -> dict[str, Any]:
    cfg = {k: v for k, v in config.items() if k != "quantization_config"}
    cfg["torch_dtype"] = "bfloat16"
    if drop_mtp:
        cfg["num_nextn_predict_layers"] = 0
    return cfg
