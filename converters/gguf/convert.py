"""`--to gguf`: block-FP8 (or BF16) safetensors -> llama.cpp GGUF in one streaming pass, optionally split."""
from __future__ import annotations

import math
from collections import Counter

from dshub.checkpoint.reader import Checkpoint
from dshub.hub.layout import source_name
from dshub.errors import UsageError
from dshub.formats.gguf_file import KV, file_size, split_kvs, split_names, split_tensors, write_gguf
from dshub.formats.gguf_layout import forced_f32, gguf_mapping, map_tensors
from dshub.formats.gguf_metadata import arch_kvs, general_kvs, llama_cpp_caveats, size_label

from dshub.converters.options import GGUFOptions
from dshub.converters.base import Advance, ConversionPlan, Converter, OutputFile, register_converter
from dshub.converters.gguf.schemes import SchemeContext, get_scheme, parse_tensor_types, resolve
from dshub.converters.gguf.tensors import SourceReader, file_producer, plan_tensors
from dshub.converters.gguf.imatrix import load_imatrix, slices_for
from dshub.converters.gguf.backend import choose_backend, imatrix_missing, require_imatrix
from dshub.converters.gguf.policy import TOKEN_RESERVE
from dshub.formats.gguf_tokenizer import load_vocab_kvs, read_json_object

NATIVE_ONLY = "MXFP4_MOE"  # the scheme that exists to keep a release's MXFP4 experts (DeepSeek-V4) lossless


def family_types(ckpt: Checkpoint, opts: GGUFOptions, mapped: list) -> dict[str, str]:
    """GGUF name -> the type the family keeps it as (its `source_types`, from each tensor's stored dtype); a
    --tensor-type rule that names the tensor wins over the scheme-dependent ones (not over tables and F32 sources)."""
    g = gguf_mapping(ckpt.config)
    if g.source_types is None:
        return {}
    scheme = get_scheme(opts.quant).name
    rules = parse_tensor_types(list(opts.tensor_type))
    out = {}
    for name, shape, src in mapped:
        dtype = ckpt.entry(src.names[0]).dtype
        t = g.source_types(name, shape, dtype, scheme)
        if t is not None and (t == g.source_types(name, shape, dtype, "") or not any(rx.search(name) for rx, _ in rules)):
            out[name] = t
    return out


def model_name(ckpt: Checkpoint, opts: GGUFOptions) -> str:
    """general.name and the file names: the `name` option, else the model's name (an HF cache snapshot's repository
    name, never its commit hash)."""
    return str(opts.name or source_name(ckpt.root))


def output_stem(ckpt: Checkpoint, opts: GGUFOptions) -> str:
    return f"{model_name(ckpt, opts)}-{get_scheme(opts.quant).name}"


@register_converter
class GGUFConverter(Converter):
    """deepseek2 GGUF: MLA (attn_k_b/attn_v_b), stacked experts, tokenizer from tokenizer.json, llama.cpp split sets."""

    options = GGUFOptions

    def preflight(self, opts: GGUFOptions) -> None:
        get_scheme(opts.quant)
        parse_tensor_types(list(opts.tensor_type))

    def intra_op_threads(self, plan: ConversionPlan, opts: GGUFOptions, workers: int) -> int:
        # Files run `workers` at a time; spare workers split each file's chunks (see write_file). When they do, our
        # threads do the parallel work and torch's OpenMP pool on top would oversubscribe the cores.
        return 1 if self._inner_workers(plan, opts) > 1 else super().intra_op_threads(plan, opts, workers)

    @staticmethod
    def _inner_workers(plan: ConversionPlan, opts: GGUFOptions) -> int:
        return max(1, opts.workers // max(1, min(opts.workers, len(plan.files))))

    def plan(self, ckpt: Checkpoint, opts: GGUFOptions) -> ConversionPlan:
        keep_mtp = opts.mtp
        mapped = map_tensors(ckpt.config, mtp=keep_mtp)
        fixed = family_types(ckpt, opts, mapped)
        ctx = SchemeContext(ckpt.config, tuple((n, s) for n, s, _ in mapped if not forced_f32(n, s) and n not in fixed))
        scheme, type_fn = resolve(opts, ctx)
        planned = plan_tensors(mapped, type_fn, fixed)
        if scheme.name == NATIVE_ONLY and "MXFP4" not in fixed.values():
            raise UsageError(f"--quant {scheme.name} keeps MXFP4 experts as they are stored; {ckpt.root} has none "
                             "(choose a type such as Q8_0 or Q4_K_M)")
        imatrix = str(opts.imatrix) if opts.imatrix else None
        if not opts.dry_run:
            require_imatrix(planned, imatrix)
        backend = choose_backend(opts.codec_backend, planned, opts.dry_run)
        gen_path = ckpt.root / "generation_config.json"
        gen = read_json_object(gen_path) if gen_path.is_file() else None
        kvs: list[KV] = general_kvs(model_name(ckpt, opts), scheme.file_type, gen,
                                    size_label([(p.info.name, p.info.shape) for p in planned]), gguf_mapping(ckpt.config).arch)
        kvs += arch_kvs(ckpt.config, mtp=keep_mtp)
        vocab_estimate = 0
        if ckpt.shapes_only and not (ckpt.root / "tokenizer.json").is_file():
            vocab_estimate = TOKEN_RESERVE * int(ckpt.config.get("vocab_size") or 0)  # sizing a config.json alone
        else:
            kvs += load_vocab_kvs(ckpt.root, ckpt.config)
        groups = split_tensors([p.info for p in planned], opts.split_max_size or 0, opts.split_max_tensors or 0)
        by_name = {p.info.name: p for p in planned}
        names = split_names(output_stem(ckpt, opts), len(groups))
        files = []
        for i, (name, group) in enumerate(zip(names, groups)):
            file_kvs = split_kvs(kvs, i, len(groups), len(planned))
            extra = vocab_estimate if i == 0 else 0
            files.append(OutputFile(name, file_size(file_kvs, group) + extra, len(group), (file_kvs, [by_name[t.name] for t in group])))
        mtp = int(ckpt.config.get("num_nextn_predict_layers") or 0)
        summary = {
            "architecture": gguf_mapping(ckpt.config).arch,
            "quant": scheme.name,
            "file_type": scheme.file_type,
            "tensors": len(planned),
            "types": dict(sorted(Counter(p.info.ggml_type for p in planned).items())),
            "fallbacks": [p.to_dict() for p in planned if p.note and p.asked != "F32"],
            "mtp_layers_left_out": 0 if keep_mtp else mtp,
            "llama_cpp_caveats": llama_cpp_caveats(ckpt.config),
            "bits_per_weight": round(8 * sum(p.info.nbytes for p in planned) / max(1, sum(math.prod(p.info.shape) for p in planned)), 4),
            "tensor_table": [p.to_dict() for p in planned],
            "codec_backend": backend,
            **({"imatrix_missing": [p.info.name for p in missing]} if opts.dry_run and (missing := imatrix_missing(planned, imatrix)) else {}),
            **({"tokenizer_bytes_estimated": vocab_estimate} if vocab_estimate else {}),
        }
        return ConversionPlan("gguf", ckpt.root, opts.out, files, summary=summary)

    def source_bytes(self, plan: ConversionPlan) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in plan.files:
            for p in f.data[1]:
                names = p.source.names
                if not names:  # computed from config.json: counted with the metadata
                    continue
                share, rest = divmod(p.info.nbytes, len(names))
                for i, n in enumerate(names):  # a stacked tensor's bytes, shared by its experts
                    out[n] = out.get(n, 0) + share + (rest if i == 0 else 0)
        return out

    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: GGUFOptions, f: OutputFile, advance: Advance) -> str:
        kvs, group = f.data
        reader = SourceReader(ckpt, plan.device, plan.summary["codec_backend"])
        imx = load_imatrix(str(opts.imatrix)) if opts.imatrix else None
        imatrix_for = (lambda p: slices_for(imx, p.info.name, p.info.shape)) if imx else (lambda p: None)
        inner = self._inner_workers(plan, opts)  # the framework runs min(workers, files) files at once
        with file_producer(reader, group, inner, imatrix_for) as produce:
            result = write_gguf(opts.out / f.name, kvs, [p.info for p in group], produce, on_tensor=lambda t: advance(t.nbytes))
        return result.sha256

    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: GGUFOptions) -> None:
        """A GGUF set is self-contained: metadata and tokenizer are inside the first file."""
