"""`--to onnx`: a dense decoder (the R1 distills) as an onnxruntime-genai model directory.

Output: external-data files (one for the model-wide weights — embeddings, rotary caches, final norm, lm_head —
then one per decoder layer), `model.onnx` (the graph, from the plan alone), then `genai_config.json` and the
tokenizer files last. Each data file is one task of the framework's pool, written under a temporary name and
renamed; a rerun skips finished files (manifest sha256). Weights stream one input tensor at a time: peak memory is
about one tensor in fp32 plus its output form. int4: `MatMulNBits` blocks quantized from the exact input values
(`quant.int4`, fp32 scales), activations fp32; lm_head and embeddings stay fp32.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from onnx import TensorProto

from dshub.arch import family_for
from dshub.checkpoint.reader import Checkpoint
from dshub.checkpoint.writer import tensor_bytes
from dshub.constants import SIDECAR_FILES
from dshub.errors import QuantizationError
from dshub.formats.gguf_tokenizer import read_json_object
from dshub.fsutil import atomic_open, hashed_atomic_open, write_json_atomic
from dshub.quant import get_codec
from dshub.quant.int4 import Int4Error, Int4Scheme

from dshub.converters.base import Advance, ConversionPlan, Converter, OutputFile, copy_sidecars, register_converter
from dshub.converters.options import ONNXOptions
from dshub.converters.onnx.genai import CONFIG_FILE, GRAPH_FILE, genai_config
from dshub.converters.onnx.graph import GraphSpec, Initializer, build_model, place, plan_initializers

TORCH_OF = {TensorProto.FLOAT: torch.float32, TensorProto.FLOAT16: torch.float16, TensorProto.UINT8: torch.uint8}
# Files onnxruntime-genai reads besides the graph: the tokenizer and the sampling defaults.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja")


def data_file_names(n_layers: int) -> list[str]:
    n = n_layers + 1
    return [f"model-{k + 1:05d}-of-{n:05d}.onnx.data" for k in range(n)]


def graph_spec(ckpt: Checkpoint, opts: ONNXOptions) -> GraphSpec:
    family = family_for(ckpt.config)
    facts = family.decoder_facts()  # UsageError naming why for MLA / MoE families
    return GraphSpec(ckpt.config, facts, family.inventory(ckpt.config), opts.precision, opts.block_size, opts.symmetric)


def _check_blocks(ckpt: Checkpoint, inits: list[Initializer], block: int) -> None:
    for t in inits:
        if t.part == "B":
            k = ckpt.entry(t.source).shape[1]
            if k % block:
                raise QuantizationError(f"input dim {k} is not a multiple of --block-size {block}",
                                        path=ckpt.weight_map[t.source], tensor=t.source)


def rope_cache(inv_freq: list[float], positions: int, fn: str) -> torch.Tensor:
    """cos or sin of position x inverse frequency, in fp32 as transformers computes them, [positions, dim / 2]."""
    freqs = torch.outer(torch.arange(positions, dtype=torch.float32), torch.tensor(inv_freq, dtype=torch.float32))
    return freqs.cos_() if fn == "rope_cos" else freqs.sin_()  # in place: one cache-sized buffer


FINITE_STEP = 1 << 20  # elements checked per step (a whole-tensor isfinite() would allocate a tensor-sized mask)


def all_finite(x: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(c).all()) for c in x.reshape(-1).split(FINITE_STEP))


class TensorSource:
    """The bytes of each initializer, from the checkpoint (one input tensor alive at a time; int4 parts share it)."""

    def __init__(self, ckpt: Checkpoint, g: GraphSpec):
        self.ckpt, self.g = ckpt, g
        self.scheme = Int4Scheme(g.block_size, g.symmetric, torch.float32)
        self._packed: tuple[str, dict[str, torch.Tensor]] | None = None

    def _float(self, name: str) -> torch.Tensor:
        return self.ckpt.read(name).to(torch.float32)

    def _transposed(self, t: Initializer) -> torch.Tensor:
        """[out, in] -> [in, out] in the output dtype, straight from the stored values (no fp32 copy of the input)."""
        w = self.ckpt.read(t.source)
        out = torch.empty(t.shape, dtype=TORCH_OF[t.elem])
        out.copy_(w.T)  # one rounding of the exact stored value (RNE), as via fp32
        del w
        return self._cast(out, t)

    def _cast(self, x: torch.Tensor, t: Initializer) -> torch.Tensor:
        y = x.to(TORCH_OF[t.elem])
        if y.dtype == torch.float16 and not all_finite(y):  # fp16 is the one narrower range
            raise QuantizationError(f"values do not fit {str(TORCH_OF[t.elem]).removeprefix('torch.')} (|x| above its largest finite value)",
                                    path=self.ckpt.weight_map.get(t.source, "config.json"), tensor=t.source or t.name)
        return y

    def tensor(self, t: Initializer) -> torch.Tensor:
        if t.kind == "cast":
            return self._cast(self._float(t.source), t)
        if t.kind == "transpose":
            return self._transposed(t)
        if t.kind in ("rope_cos", "rope_sin"):
            return self._cast(rope_cache(self.g.facts.rope_inv_freq(self.g.config), t.shape[0], t.kind), t)
        if t.kind == "nbits":
            if self._packed is None or self._packed[0] != t.source:
                self._packed = None  # free the previous weight's parts first
                try:
                    # the stored values, upcast row chunk by row chunk inside the quantizer (exact)
                    q = get_codec("int4_quantize", "cpu")(self.ckpt.read(t.source), self.scheme)
                except Int4Error as e:
                    raise QuantizationError(str(e), path=self.ckpt.weight_map[t.source], tensor=t.source) from None
                self._packed = (t.source, get_codec("int4_pack_matmul_nbits", "cpu")(q))
            return self._packed[1][t.part].reshape(t.shape)
        raise ValueError(f"unknown initializer kind {t.kind}")  # pragma: no cover - plan and code out of step


def write_data_file(path: Path, inits: list[Initializer], src: TensorSource, on_tensor: Advance) -> str:
    """Initializers at their planned offsets (zero padding between), atomically; returns the sha256."""
    pos = 0
    with hashed_atomic_open(path) as f:
        for t in inits:
            f.write(b"\0" * (t.offset - pos))
            x = src.tensor(t)
            if tuple(x.shape) != t.shape or x.dtype != TORCH_OF[t.elem]:  # pragma: no cover - plan and code out of step
                raise ValueError(f"{path.name}: {t.name}: produced {x.dtype}{list(x.shape)}, planned {list(t.shape)}")
            data = tensor_bytes(x)
            f.write(data)
            pos = t.offset + t.nbytes
            del x, data
            on_tensor(t.nbytes)
    return f.hexdigest()


def _by_file(inits: list[Initializer]) -> dict[str, list[Initializer]]:
    out: dict[str, list[Initializer]] = {}
    for t in inits:
        out.setdefault(t.file, []).append(t)
    return out


@register_converter
class ONNXConverter(Converter):
    """onnxruntime-genai decoder: GQA, RMSNorm, SwiGLU; fp32 / fp16 / int4 (MatMulNBits)."""

    options = ONNXOptions

    def plan(self, ckpt: Checkpoint, opts: ONNXOptions) -> ConversionPlan:
        g = graph_spec(ckpt, opts)
        names = data_file_names(g.spec.num_layers)
        inits = place(plan_initializers(g), lambda layer: names[0 if layer is None else layer + 1])
        if not ckpt.shapes_only:
            _check_blocks(ckpt, inits, opts.block_size)
        graph = build_model(g, inits).SerializeToString(deterministic=True)
        files = [OutputFile(f, max(t.offset + t.nbytes for t in group), len(group), group)
                 for f, group in _by_file(inits).items()]
        files.append(OutputFile(GRAPH_FILE, len(graph), 0, graph))
        summary = {"precision": opts.precision, "block_size": opts.block_size if opts.precision == "int4" else None,
                   "symmetric": opts.symmetric if opts.precision == "int4" else None, "initializers": len(inits),
                   "matmul_nbits": sum(1 for t in inits if t.part == "B"), "graph_bytes": len(graph),
                   "architecture": g.spec.architecture}
        return ConversionPlan("onnx", ckpt.root, opts.out, files, summary=summary)

    def source_bytes(self, plan: ConversionPlan) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in plan.files:
            if f.name != GRAPH_FILE:
                for t in f.data:
                    if t.source:
                        out[t.source] = out.get(t.source, 0) + t.nbytes
        return out

    def write_file(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ONNXOptions, f: OutputFile, advance: Advance) -> str:
        if f.name == GRAPH_FILE:
            with atomic_open(opts.out / f.name) as fh:
                fh.write(f.data)
            advance(f.nbytes)
            return hashlib.sha256(f.data).hexdigest()
        return write_data_file(opts.out / f.name, f.data, TensorSource(ckpt, graph_spec(ckpt, opts)), advance)

    def finalize(self, ckpt: Checkpoint, plan: ConversionPlan, opts: ONNXOptions) -> None:
        copy_sidecars(ckpt.root, opts.out, skip=tuple(n for n in SIDECAR_FILES if n not in TOKENIZER_FILES))
        gen_path, tok_path = ckpt.root / "generation_config.json", ckpt.root / "tokenizer.json"
        gen = read_json_object(gen_path) if gen_path.is_file() else None
        tok = read_json_object(tok_path) if tok_path.is_file() else None
        write_json_atomic(opts.out / CONFIG_FILE, genai_config(ckpt.config, graph_spec(ckpt, opts).facts, gen, tok))
