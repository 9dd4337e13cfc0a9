"""`dshub info` / `dshub verify` for GGUF files and llama.cpp split sets (headers only; tensor data is not read)."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dshub.quant.gguf.types import FILE_TYPES, GGML_TYPES

from dshub.arch.family import GGUFMapping, gguf_architectures, gguf_family
from dshub.errors import DshubError, GGUFError
from dshub.formats.gguf_file import (
    SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS, VT, GGUFHeader, read_gguf_header, resolve_split_set,
)
from dshub.formats.gguf_layout import forced_f32, map_tensors
from dshub.formats.gguf_metadata import config_from_gguf, llama_cpp_caveats
from dshub.checks.findings import Finding, VerifyReport, error_text

OPTIONAL_RE = re.compile(r"\.nextn\.(embed_tokens|shared_head_head|shared_head_norm)\.weight$")  # llama.cpp: not required
# Byte offsets of the fp16 scale fields inside one block of each quantized type (ggml-common.h block layouts).
FP16_SCALE_OFFSETS: dict[str, tuple[int, ...]] = {
    "Q4_0": (0,), "Q5_0": (0,), "Q8_0": (0,), "Q4_1": (0, 2), "Q5_1": (0, 2), "IQ4_NL": (0,), "IQ4_XS": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}
FLOAT_TYPES: dict[str, str] = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}
SCAN_BLOCKS = 1 << 20  # blocks (or elements) checked per step
FILE_TYPE_NAMES = {v: k for k, v in FILE_TYPES.items()}
# Keys (after `<arch>.`) whose absence changes how llama.cpp runs a deepseek2 / deepseek32 file, and what happens then
# (dense architectures such as qwen2 and llama have neither experts nor MLA).
MLA_ARCHITECTURES = ("deepseek2", "deepseek32")
WARN_KEYS = {
    "expert_gating_func": "llama.cpp falls back to softmax gating (wrong for DeepSeek-V3/R1)",
    "attention.key_length_mla": "pre-MLA file: llama.cpp runs it without MLA (a much larger KV cache)",
}


def family_type_problems(h: GGUFHeader, mapping: GGUFMapping) -> list[str]:
    """Keys the family reads whose stored type is not the one its mapping declares: the spec may allow more (a
    per-layer ARRAY for `feed_forward_length`), but the family's formulas read one value of that type."""
    wanted = {mapping.key(f.suffix): VT[f.vtype] for f in (*mapping.fields, *mapping.derived)}
    return [f"metadata {key} is {h.kv_types[key].name}, the {mapping.arch} mapping reads {vt.name}"
            for key, vt in wanted.items() if key in h.kv_types and h.kv_types[key] is not vt]


def _headers(files: list[Path]) -> tuple[list[GGUFHeader], list[Finding]]:
    heads, findings = [], []
    for f in files:
        if not f.is_file():
            findings.append(Finding("gguf-split", "error", f.name, None, "file of the split set is missing"))
            continue
        try:
            heads.append(read_gguf_header(f))
        except DshubError as e:
            findings.append(Finding("gguf-header", "error", f.name, e.tensor, error_text(e, f.name, f"tensor {e.tensor}")))
    return heads, findings


def _split_findings(files: list[Path], heads: list[GGUFHeader]) -> Iterator[Finding]:
    if len(files) == 1:
        return
    total = sum(len(h.tensors) for h in heads)
    for i, h in enumerate(heads):
        name = h.path.name
        if h.split is None:
            yield Finding("gguf-split", "error", name, None, f"no {SPLIT_COUNT} key in a file named as part {i + 1} of {len(files)}")
            continue
        no, count, n = h.split
        if (no, count) != (files.index(h.path), len(files)):
            yield Finding("gguf-split", "error", name, None, f"{SPLIT_NO}={no}, {SPLIT_COUNT}={count}; the file name says part "
                          f"{files.index(h.path)} of {len(files)}")
        if len(heads) == len(files) and n != total:
            yield Finding("gguf-split", "error", name, None, f"{SPLIT_TENSORS}={n} but the files hold {total} tensors")
    seen: dict[str, str] = {}
    for h in heads:
        for t in h.tensors:
            if t.name in seen:
                yield Finding("gguf-split", "error", h.path.name, t.name, f"also in {seen[t.name]}")
            seen.setdefault(t.name, h.path.name)


def _architecture_findings(heads: list[GGUFHeader]) -> Iterator[Finding]:
    first = heads[0]
    kv = first.kv
    arch = kv.get("general.architecture")
    fam = gguf_family(str(arch))
    if fam is None or fam.gguf is None:
        yield Finding("gguf-architecture", "warning", first.path.name, None,
                      f"architecture {arch!r}: only {', '.join(gguf_architectures())} tensors are checked")
        return
    for suffix, why in (WARN_KEYS if arch in MLA_ARCHITECTURES else {}).items():
        if f"{arch}.{suffix}" not in kv:
            yield Finding("gguf-architecture", "warning", first.path.name, None, f"no {arch}.{suffix}: {why}")
    problems = family_type_problems(first, fam.gguf)
    if problems:
        yield from (Finding("gguf-architecture", "error", first.path.name, None, p) for p in problems)
        return
    where = {t.name: h.path.name for h in heads for t in h.tensors}
    have = {t.name: t for h in heads for t in h.tensors}
    try:
        config = config_from_gguf(kv, set(have))
        expected = {n: s for n, s, _ in map_tensors(config, mtp=int(config.get("num_nextn_predict_layers") or 0) > 0)}
    except DshubError as e:
        yield Finding("gguf-architecture", "error", first.path.name, None, str(e))
        return
    for why in llama_cpp_caveats(config):
        yield Finding("gguf-architecture", "warning", first.path.name, None, why)
    for n, shape in expected.items():
        t = have.get(n)
        if t is None and OPTIONAL_RE.search(n):
            continue
        if t is None:
            yield Finding("gguf-architecture", "error", None, n, "missing (llama.cpp will refuse to load the model)")
        elif tuple(t.shape) != shape:
            yield Finding("gguf-architecture", "error", where[n], n, f"shape {list(t.ne)} (ne), expected {list(reversed(shape))}")
        elif forced_f32(n, shape) and t.ggml_type != "F32":
            yield Finding("gguf-architecture", "warning", where[n], n, f"{t.ggml_type}: llama.cpp keeps this tensor in F32")
    for n in sorted(set(have) - set(expected)):
        yield Finding("gguf-architecture", "error", where[n], n, f"not part of the {arch} layout (llama.cpp rejects extra tensors)")
    tokens = kv.get("tokenizer.ggml.tokens")
    vocab = kv.get(f"{arch}.vocab_size")
    if tokens is not None and vocab is not None and len(tokens) != vocab:
        yield Finding("gguf-tokenizer", "error", first.path.name, None, f"{len(tokens)} tokens, {arch}.vocab_size is {vocab}")


def _nonfinite(h: GGUFHeader, t: Any) -> int:
    """How many stored floats of tensor `t` (values, or the fp16 block scales of quantized types) are NaN/Inf."""
    start, end = h.tensor_data(t)
    raw = np.memmap(h.path, dtype=np.uint8, mode="r", offset=start, shape=(end - start,))
    if t.ggml_type in FLOAT_TYPES:
        vals = raw.view(FLOAT_TYPES[t.ggml_type])
        if t.ggml_type == "BF16":  # exponent all ones = Inf/NaN
            return sum(int(((vals[i:i + SCAN_BLOCKS] & 0x7F80) == 0x7F80).sum()) for i in range(0, vals.size, SCAN_BLOCKS))
        return sum(int((~np.isfinite(vals[i:i + SCAN_BLOCKS])).sum()) for i in range(0, vals.size, SCAN_BLOCKS))
    offsets = FP16_SCALE_OFFSETS.get(t.ggml_type)
    if not offsets:
        return 0
    blocks = raw.reshape(-1, GGML_TYPES[t.ggml_type].type_size)
    bad = 0
    for i in range(0, blocks.shape[0], SCAN_BLOCKS):
        chunk = blocks[i:i + SCAN_BLOCKS]
        for off in offsets:
            bad += int((~np.isfinite(np.ascontiguousarray(chunk[:, off:off + 2]).view("<f2"))).sum())
    return bad


def _value_findings(heads: list[GGUFHeader]) -> Iterator[Finding]:
    for h in heads:
        for t in h.tensors:
            n = _nonfinite(h, t)
            if n:
                what = "values" if t.ggml_type in FLOAT_TYPES else "block scales"
                yield Finding("gguf-values", "error", h.path.name, t.name, f"{n} NaN/Inf {what} ({t.ggml_type})")


def verify_gguf(path: str | Path, deep: bool = False) -> VerifyReport:
    """Headers, split-set completeness and the family's tensor table (deepseek2, deepseek32); with `deep`, NaN/Inf
    values and block scales."""
    try:
        files = resolve_split_set(path)
    except DshubError as e:
        name = Path(path).name
        return VerifyReport(str(path), [Finding("gguf-split", "error", name, None, error_text(e, name, str(path)))], 0, 0, ["gguf-split"])
    heads, findings = _headers(files)
    if heads:
        findings += list(_split_findings(files, heads))
        findings += list(_architecture_findings(heads))
        if deep:
            findings += list(_value_findings(heads))
    return VerifyReport(str(path), findings, len(files), sum(len(h.tensors) for h in heads),
                        ["gguf-header", "gguf-split", "gguf-architecture", "gguf-tokenizer"] + (["gguf-values"] if deep else []))


def gguf_info(path: str | Path) -> dict[str, Any]:
    """Architecture, hyper-parameters, tensor types and sizes, tokenizer and split layout of a GGUF file or set."""
    files = resolve_split_set(path)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise GGUFError(f"split set incomplete, missing {', '.join(missing)}", path=str(files[0]), show_path=files[0].name)
    heads = [read_gguf_header(f) for f in files]
    kv = heads[0].kv
    tensors = [t for h in heads for t in h.tensors]
    types: dict[str, dict[str, int]] = {}
    for t in tensors:
        e = types.setdefault(t.ggml_type, {"tensors": 0, "bytes": 0, "params": 0})
        e["tensors"] += 1
        e["bytes"] += t.nbytes
        e["params"] += math.prod(t.shape)
    params = sum(math.prod(t.shape) for t in tensors)
    arch = kv.get("general.architecture")
    hp = {k.removeprefix(f"{arch}."): v for k, v in kv.items() if k.startswith(f"{arch}.")}
    ftype = kv.get("general.file_type")
    return {
        "format": "gguf",
        "path": str(path),
        "architecture": arch,
        "name": kv.get("general.name"),
        "file_type": FILE_TYPE_NAMES.get(ftype, ftype),
        "hparams": dict(sorted(hp.items())),
        "tokenizer": {"model": kv.get("tokenizer.ggml.model"), "pre": kv.get("tokenizer.ggml.pre"),
                      "tokens": len(kv.get("tokenizer.ggml.tokens") or []), "merges": len(kv.get("tokenizer.ggml.merges") or []),
                      "chat_template": "tokenizer.chat_template" in kv},
        "files": [{"name": h.path.name, "bytes": h.file_size, "tensors": len(h.tensors)} for h in heads],
        "tensors": len(tensors),
        "params": params,
        "bytes": sum(h.file_size for h in heads),
        "bits_per_weight": round(8 * sum(t.nbytes for t in tensors) / max(1, params), 3),
        "types": dict(sorted(types.items(), key=lambda kv_: -kv_[1]["bytes"])),
    }
