"""Block-FP8 -> BF16: same shards and tensor order, scales consumed, `quantization_config` removed."""
from __future__ import annotations

from typing import Any, Iterator

import torch

from dshub.arch import spec_for
from dshub.arch.spec import fp8_scale_name
from dshub.checkpoint.reader import Checkpoint, read_entry
from dshub.checkpoint.header import TensorEntry
from dshub.checkpoint.writer import TensorDecl, shard_size, write_shard
from dshub.quant import get_codec

from dshub.converters.pipeline import TensorPipeline, ordered_producer
from dshub.converters.options import Bf16Options
from dshub.converters.base import Advance, ConversionPlan, Converter, OutputFile, copy_sidecars, register_converter, write_index_and_config

FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
SHARD_METADATA = {"format": "pt"}


def mtp_tensor_names(ckpt: Checkpoint) -> set[str]:
    return {t.name for t in spec_for(ckpt.config) if t.mtp}


@register_converter
class Bf16Converter(Converter):
    """Dequantize every block-FP8 weight to bf16 (round to nearest even); copy everything else unchanged."""

    options = Bf16Options

    def plan(self, ckpt: Checkpoint, opts: Bf16Options) -> ConversionPlan:
        drop = mtp_tensor_names(ckpt) if opts.drop_mtp else set()
        files: list[OutputFile] = []
        n_fp8 = 0
        for shard in ckpt.shard_names:
            entries = ckpt.tensors_in(shard)
            decls: list[TensorDecl] = []
            sources: list[TensorEntry] = []
            for e in entries:
                if e.name.endswith("_scale_inv") or e.name in drop:
                    continue
                is_fp8 = e.dtype in FP8_DTYPES
                n_fp8 += is_fp8
                decls.append(TensorDecl(e.name, "BF16" if is_fp8 else e.dtype, e.shape))
                sources.append(e)
            if decls:
                files.append(OutputFile(shard, shard_size(decls, SHARD_METADATA), len(decls), (decls, sources)))
        return ConversionPlan("bf16", ckpt.root, opts.out, files, summary={"fp8_weights": n_fp8, "dropped_mtp_tensors": len(drop)})

    def source_bytes(self, plan: ConversionPlan) -> dict[str, int]:
        return {d.name: d.nbytes for f in plan.files for d in f.data[0]}

    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: Bf16Options, f: OutputFile, advance: Advance) -> str:
        decls, sources = f.data
        src = {e.name: e for e in sources}
        path = ckpt.shard_path(f.name)
        block = ckpt.encoding.block or (128, 128)
        # On the CPU a weight streams out one row block at a time; a GPU kernel works on the whole tensor.
        dequant = get_codec("fp8_block_dequant_bf16_rows" if plan.device == "cpu" else "fp8_block_dequant_bf16", plan.device)

        def load(d: TensorDecl) -> tuple[torch.Tensor, ...]:
            e = src[d.name]
            w = read_entry(path, e)
            return (w, ckpt.read(fp8_scale_name(d.name))) if e.dtype in FP8_DTYPES else (w,)

        def compute(d: TensorDecl, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor | Iterator[torch.Tensor]:
            return dequant(inputs[0], inputs[1], block) if len(inputs) == 2 else inputs[0]

        # On a GPU the next tensor is read and staged while this one is dequantized. On the CPU the workers already
        # overlap reads with compute across files, so no read-ahead: memory stays at about the current FP8 input.
        depth = 1 if plan.device == "cpu" else 2
        pipe = TensorPipeline(load, compute, plan.device, depth=depth, stage=lambda d: src[d.name].dtype in FP8_DTYPES)
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
