"""`--to gguf`: block-FP8 (or BF16) safetensors -> llama.cpp GGUF in one streaming pass, optionally split."""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import torch

from dshub.checkpoint.reader import Checkpoint
from dshub.errors import UsageError
from dshub.formats.gguf_file import KV, file_size, split_kvs, split_names, split_tensors, write_gguf
from dshub.formats.gguf_layout import forced_f32, map_tensors
from dshub.formats.gguf_metadata import arch_kvs, general_kvs, llama_cpp_caveats, size_label

from dshub.converters.base import Advance, ConversionOptions, ConversionPlan, Converter, OutputFile, register_converter
from dshub.converters.gguf.schemes import PARAM_HOOKS, SchemeContext, get_scheme, parse_tensor_types, resolve
from dshub.converters.gguf.tensors import PlannedTensor, SourceReader, plan_tensors, produce
from dshub.converters.gguf.imatrix import load_imatrix, slices_for
from dshub.formats.gguf_tokenizer import load_vocab_kvs, read_json_object

KNOWN_PARAMS = ("quant", "split_max_size", "split_max_tensors", "tensor_type", "name", "mtp")
SIZE_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}  # as llama.cpp's gguf-split / converter


def parse_size(text: str | int) -> int:
    """'50G', '500M', '1.5T' or a byte count -> bytes (decimal units, as llama.cpp)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", str(text).upper())
    if not m:
        raise UsageError(f"--split-max-size {text!r}: expected a size like 50G, 500M or a byte count")
    return int(float(m[1]) * SIZE_UNITS[m[2]])


def model_name(ckpt: Checkpoint, params: dict[str, Any]) -> str:
    """general.name: the `name` option, else the checkpoint directory's name."""
    return str(params.get("name") or ckpt.root.resolve().name)


def output_stem(ckpt: Checkpoint, params: dict[str, Any]) -> str:
    return f"{model_name(ckpt, params)}-{params['quant']}"


@register_converter("gguf")
class GGUFConverter(Converter):
    """deepseek2 GGUF: MLA (attn_k_b/attn_v_b), stacked experts, tokenizer from tokenizer.json, llama.cpp split sets."""

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(KNOWN_PARAMS) - set(PARAM_HOOKS))
        if unknown:
            raise UsageError(f"--to gguf does not take {', '.join(unknown)}")
        if not params.get("quant"):
            raise UsageError("--to gguf needs --quant TYPE (e.g. Q8_0, BF16)")
        out = dict(params)
        out["quant"] = get_scheme(params["quant"]).name
        if params.get("split_max_size") is not None:
            out["split_max_size"] = parse_size(params["split_max_size"])
            if out["split_max_size"] <= 0:
                raise UsageError("--split-max-size must be positive")
        if params.get("split_max_tensors") is not None:
            if int(params["split_max_tensors"]) <= 0:
                raise UsageError("--split-max-tensors must be positive")
            out["split_max_tensors"] = int(params["split_max_tensors"])
        parse_tensor_types(list(params.get("tensor_type") or []))
        return out

    def plan(self, ckpt: Checkpoint, opts: ConversionOptions) -> ConversionPlan:
        params = opts.params
        keep_mtp = bool(params.get("mtp"))
        mapped = map_tensors(ckpt.config, mtp=keep_mtp)
        ctx = SchemeContext(ckpt.config, tuple((n, s) for n, s, _ in mapped if not forced_f32(n, s)))
        scheme, type_fn = resolve(params, ctx)
        planned = plan_tensors(mapped, type_fn)
        gen_path = ckpt.root / "generation_config.json"
        gen = read_json_object(gen_path) if gen_path.is_file() else None
        kvs: list[KV] = general_kvs(model_name(ckpt, params), scheme.file_type, gen,
                                    size_label([(p.info.name, p.info.shape) for p in planned]))
        kvs += arch_kvs(ckpt.config, mtp=keep_mtp) + load_vocab_kvs(ckpt.root, ckpt.config)
        groups = split_tensors([p.info for p in planned], params.get("split_max_size", 0), params.get("split_max_tensors", 0))
        by_name = {p.info.name: p for p in planned}
        names = split_names(output_stem(ckpt, params), len(groups))
        files = []
        for i, (name, group) in enumerate(zip(names, groups)):
            file_kvs = split_kvs(kvs, i, len(groups), len(planned))
            files.append(OutputFile(name, file_size(file_kvs, group), len(group), (file_kvs, [by_name[t.name] for t in group])))
        mtp = int(ckpt.config.get("num_nextn_predict_layers") or 0)
        summary = {
            "architecture": "deepseek2",
            "quant": scheme.name,
            "file_type": scheme.file_type,
            "tensors": len(planned),
            "types": dict(sorted(Counter(p.info.ggml_type for p in planned).items())),
            "fallbacks": [p.to_dict() for p in planned if p.note and p.asked != "F32"],
            "mtp_layers_left_out": 0 if keep_mtp else mtp,
            "llama_cpp_caveats": llama_cpp_caveats(ckpt.config),
            "bits_per_weight": round(8 * sum(p.info.nbytes for p in planned) / max(1, sum(math.prod(p.info.shape) for p in planned)), 4),
            "tensor_table": [p.to_dict() for p in planned],
        }
        return ConversionPlan("gguf", ckpt.root, opts.out, files, summary=summary)

    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ConversionOptions, f: OutputFile, advance: Advance) -> str:
        kvs, group = f.data
        reader = SourceReader(ckpt, plan.device)
        by_name: dict[str, PlannedTensor] = {p.info.name: p for p in group}
        imx = load_imatrix(str(opts.params["imatrix"])) if opts.params.get("imatrix") else None
        imatrix_for = (lambda t: slices_for(imx, t.name, t.shape)) if imx else (lambda t: None)
        # The framework runs min(workers, files) files at once; the rest of the workers split each file's chunks.
        inner = max(1, opts.workers // max(1, min(opts.workers, len(plan.files))))
        threads = torch.get_num_threads()
        if inner > 1:  # our threads do the parallel work; torch's OpenMP pool on top would oversubscribe the cores
            torch.set_num_threads(1)
        try:
            result = write_gguf(opts.out / f.name, kvs, [p.info for p in group], lambda t: produce(reader, by_name[t.name], inner, imatrix_for(t)),
                                on_tensor=lambda t: advance(t.nbytes))
        finally:
            torch.set_num_threads(threads)
        return result.sha256

    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ConversionOptions) -> None:
        """A GGUF set is self-contained: metadata and tokenizer are inside the first file."""
