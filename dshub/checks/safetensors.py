"""Safetensors checkpoint checks: a registry of checks, each yielding findings that name file and tensor."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from dshub.arch import spec_for
from dshub.arch.spec import FP8_WEIGHT_DTYPES, MXFP4_CODE_DTYPES, MXFP4_SCALE_DTYPES, ArchSpec
from dshub.checkpoint.reader import INDEX_NAME, Checkpoint, pickle_files, read_entry, read_span, scale_shape
from dshub.checkpoint.writer import ST_TO_TORCH
from dshub.quant.registry import Registry
from dshub.errors import CheckpointError, DshubError
from dshub.formats.int4_config import expected_names, int4_config, int4_problems
from dshub.checkpoint.header import ShardHeader, TensorEntry
from dshub.checks.findings import Finding, VerifyReport, error_text


@dataclass
class VerifyContext:
    """What the checks share: the opened checkpoint, parsed headers (None when unreadable) and the spec."""

    ckpt: Checkpoint
    headers: dict[str, ShardHeader | None]
    spec: ArchSpec | None
    deep: bool = False

    @cached_property
    def stored(self) -> dict[str, tuple[str, TensorEntry]]:
        """Every tensor the readable shards hold: name -> (shard, entry)."""
        return {n: (s, h.tensors[n]) for s, h in self.headers.items() if h for n in h.tensors}


Check = Callable[[VerifyContext], Iterator[Finding]]
CHECKS: Registry[str, Check] = Registry("verify check")  # run in registration order


def check(name: str) -> Callable[[Check], Check]:
    return CHECKS.register(name)


def _err(check_name: str, file: str | None, tensor: str | None, msg: str) -> Finding:
    return Finding(check_name, "error", file, tensor, msg)


@check("pickle")
def _pickles(ctx: VerifyContext) -> Iterator[Finding]:
    for p in pickle_files(ctx.ckpt.root):
        yield _err("pickle", p.name, None, "pickle model file: never loaded by dshub (unpickling can run code); remove it or use safetensors")


@check("index")
def _index(ctx: VerifyContext) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    seen: dict[str, str] = {}
    for shard, header in ctx.headers.items():
        if header is None:
            continue
        for name in header.tensors:
            if name in seen:
                yield _err("index", shard, name, f"also stored in {seen[name]} (a tensor must live in exactly one shard)")
            seen.setdefault(name, shard)
            if ckpt.weight_map.get(name) is None:
                yield _err("index", shard, name, f"stored in the shard but missing from {INDEX_NAME}")
            elif ckpt.weight_map[name] != shard:
                yield _err("index", shard, name, f"{INDEX_NAME} places it in {ckpt.weight_map[name]}")
    for name, shard in ckpt.weight_map.items():
        header = ctx.headers.get(shard)
        if header is not None and name not in header.tensors:
            yield _err("index", shard, name, f"listed in {INDEX_NAME} but not stored in the shard")
    listed = set(ckpt.weight_map.values())
    for p in sorted(ckpt.root.glob("*.safetensors")):
        if p.name not in listed and len(listed) > 1:
            yield Finding("index", "warning", p.name, None, f"shard not referenced by {INDEX_NAME}")


@check("architecture")
def _architecture(ctx: VerifyContext) -> Iterator[Finding]:
    if ctx.spec is None:
        return
    stored = ctx.stored
    fp8 = ctx.ckpt.encoding.name == "fp8-block"
    expected = set()
    int4 = int4_config(ctx.ckpt.config)
    for t in ctx.spec:
        expected.add(t.name)
        if t.name not in stored:
            packed = expected_names(int4, t) if int4 and t.linear else set()
            if packed & stored.keys():  # an INT4 checkpoint: the packed tensors stand in for the weight (check "int4")
                expected |= packed
                continue
            where = ctx.ckpt.weight_map.get(t.name) or (INDEX_NAME if (ctx.ckpt.root / INDEX_NAME).is_file() else None)
            yield _err("architecture", where, t.name, f"missing (the architecture needs {list(t.shape)})")
            continue
        shard, e = stored[t.name]
        want = t.stored_shape if e.dtype in MXFP4_CODE_DTYPES else t.shape
        if e.shape != want:
            packed = " (MXFP4: two codes per byte)" if want != t.shape else ""
            yield _err("architecture", shard, t.name, f"shape {list(e.shape)}, the architecture needs {list(want)}{packed}")
        if (fp8 and t.fp8) or t.mxfp4:
            expected.add(t.scale_name)
    for name in sorted(set(stored) - expected):
        yield _err("architecture", stored[name][0], name, "unexpected tensor (not part of the architecture)")


@check("dtypes")
def _dtypes(ctx: VerifyContext) -> Iterator[Finding]:
    """Each stored tensor of the inventory has a dtype its family allows; a scale sits only beside an FP8 weight."""
    if ctx.spec is None:
        return
    stored = ctx.stored
    fp8 = ctx.ckpt.encoding.name == "fp8-block"
    for t in ctx.spec:
        if t.name not in stored:
            continue
        shard, e = stored[t.name]
        allowed = t.allowed_dtypes(fp8)
        if e.dtype not in allowed:
            yield _err("dtypes", shard, t.name, f"stored as {e.dtype}; the architecture allows {_listed(allowed)} for a {t.role.value} tensor")
            continue  # its scale is judged beside a weight of a dtype the family allows
        if t.scale_name not in stored:
            continue
        sshard, s = stored[t.scale_name]
        if t.mxfp4 and e.dtype in MXFP4_CODE_DTYPES:
            if s.dtype not in MXFP4_SCALE_DTYPES:
                yield _err("dtypes", sshard, t.scale_name, f"stored as {s.dtype}; an MXFP4 scale is {_listed(MXFP4_SCALE_DTYPES)} (e8m0 bytes)")
        elif e.dtype not in FP8_WEIGHT_DTYPES:
            yield _err("dtypes", sshard, t.scale_name, f"a scale beside {t.name}, which is {e.dtype}, not FP8 (a mixed or mislabelled checkpoint)")
        elif s.dtype not in ctx.spec.scale_dtypes:
            yield _err("dtypes", sshard, t.scale_name, f"stored as {s.dtype}; the architecture allows {_listed(ctx.spec.scale_dtypes)} for an FP8 scale")


def _listed(dtypes: frozenset[str]) -> str:
    return "/".join(sorted(dtypes))


@check("int4")
def _int4(ctx: VerifyContext) -> Iterator[Finding]:
    if ctx.spec is None:
        return
    stored = ctx.stored
    for severity, file, tensor, msg in int4_problems(ctx.ckpt, ctx.spec, stored):
        yield Finding("int4", severity, file, tensor, msg)


@check("fp8-scales")
def _scales(ctx: VerifyContext) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ctx.spec is None or ckpt.encoding.name != "fp8-block":
        return
    block = ckpt.encoding.block or (128, 128)
    stored = ctx.stored
    for t in ctx.spec:
        if not t.fp8 or t.name not in stored:
            continue
        shard, w = stored[t.name]
        if w.dtype not in FP8_WEIGHT_DTYPES:
            continue  # a non-FP8 weight in an FP8 checkpoint is legal (modules kept in higher precision)
        if t.scale_name not in stored:
            yield _err("fp8-scales", shard, t.scale_name, f"missing: FP8 weight {t.name} cannot be dequantized without it")
            continue
        sshard, s = stored[t.scale_name]
        if s.dtype not in ctx.spec.scale_dtypes:
            continue  # check "dtypes" reports it; its values mean nothing as floats
        want = scale_shape(w.shape, block)
        if s.shape != want:
            yield _err("fp8-scales", sshard, t.scale_name, f"shape {list(s.shape)}, {list(want)} expected for {t.name} {list(w.shape)} in {block[0]}x{block[1]} blocks")
            continue
        yield from _scale_values(ckpt, sshard, s, pow2=_ue8m0(ckpt))


def _ue8m0(ckpt: Checkpoint) -> bool:
    """The checkpoint declares power-of-two (ue8m0) FP8 scales (DeepSeek-V3.1 and V4 releases)."""
    return (ckpt.config.get("quantization_config") or {}).get("scale_fmt") == "ue8m0"


def _scale_values(ckpt: Checkpoint, shard: str, entry: TensorEntry, pow2: bool = False) -> Iterator[Finding]:
    name = entry.name
    v = read_entry(ckpt.shard_path(shard), entry).to(torch.float32)  # by the shard that holds it, whatever the index says
    bad_nan = int((~torch.isfinite(v)).sum())
    bad_pos = int((v <= 0).sum())
    if bad_nan:
        nan_byte = " (e8m0 byte 0xFF is NaN)" if entry.dtype == "F8_E8M0" else ""
        yield _err("fp8-scales", shard, name, f"{bad_nan} of {v.numel()} scales are NaN or Inf{nan_byte}")
    if bad_pos:
        yield _err("fp8-scales", shard, name, f"{bad_pos} of {v.numel()} scales are zero or negative")
    if pow2 and not bad_nan and not bad_pos:
        off = int((torch.frexp(v).mantissa != 0.5).sum())
        if off:
            yield _err("fp8-scales", shard, name, f"{off} of {v.numel()} scales are not powers of two (scale_fmt ue8m0)")


@check("mxfp4")
def _mxfp4(ctx: VerifyContext) -> Iterator[Finding]:
    """MXFP4 weights: codes [out, in/2], an e8m0 scale per 32 inputs [out, in/32], no NaN scale byte (0xFF)."""
    if ctx.spec is None:
        return
    stored = ctx.stored
    for t in ctx.spec:
        if not t.mxfp4 or t.name not in stored or stored[t.name][1].dtype not in MXFP4_CODE_DTYPES:
            continue
        shard, _ = stored[t.name]
        if t.scale_name not in stored:
            yield _err("mxfp4", shard, t.scale_name, f"missing: MXFP4 weight {t.name} cannot be decoded without it")
            continue
        sshard, s = stored[t.scale_name]
        want = t.mxfp4_scale_shape()
        if s.shape != want:
            yield _err("mxfp4", sshard, t.scale_name, f"shape {list(s.shape)}, {list(want)} expected for {t.name} "
                       f"{list(t.shape)}: one scale per {t.shape[-1] // want[-1]} inputs")
            continue
        if s.dtype not in MXFP4_SCALE_DTYPES:
            continue  # check "dtypes" reports it
        raw = read_span(ctx.ckpt.shard_path(sshard), s.start, s.nbytes, s.name)
        n_nan = int((raw == 0xFF).sum())
        if n_nan:
            yield _err("mxfp4", sshard, t.scale_name, f"{n_nan} of {s.shape[0] * s.shape[1]} scales are the e8m0 NaN byte 0xFF")


@check("tables")
def _tables(ctx: VerifyContext) -> Iterator[Finding]:
    """Integer tables (DeepSeek-V4's hash-routing tid2eid): every entry in [0, max_value)."""
    if ctx.spec is None:
        return
    stored = ctx.stored
    for t in ctx.spec:
        if t.max_value is None or t.name not in stored or stored[t.name][1].dtype not in t.allowed_dtypes(False):
            continue
        shard, e = stored[t.name]
        v = read_entry(ctx.ckpt.shard_path(shard), e)
        bad = (v < 0) | (v >= t.max_value)
        if bool(bad.any()):
            yield _err("tables", shard, t.name, f"{int(bad.sum())} of {v.numel()} entries outside [0, {t.max_value}) "
                       f"(e.g. {int(v[bad][0])}): an expert id the layer does not have")


@check("values")
def _values(ctx: VerifyContext) -> Iterator[Finding]:
    if not ctx.deep:
        return
    scanned = [(shard, name, e) for shard, header in ctx.headers.items() if header is not None
               for name, e in header.tensors.items()
               if e.dtype.startswith(("F", "BF")) and e.dtype != "F8_E8M0" and e.dtype in ST_TO_TORCH]
    # reads every value (hours on a released checkpoint): bytes, rate and ETA on stderr, quiet when not a TTY
    with tqdm(total=sum(e.nbytes for _, _, e in scanned), desc="verify --deep", unit="B", unit_scale=True,
              unit_divisor=1024, file=sys.stderr, disable=None, leave=False) as bar:
        for shard, name, e in scanned:
            t = read_entry(ctx.ckpt.shard_path(shard), e)  # by the shard that holds it, whatever the index says
            n_bad = _count_nonfinite(t)
            bar.update(e.nbytes)
            if n_bad:
                yield _err("values", shard, name, f"{n_bad} NaN/Inf values")


def _count_nonfinite(t: torch.Tensor, chunk: int = 1 << 24) -> int:
    flat = t.reshape(-1)
    return sum(int((~torch.isfinite(flat[i : i + chunk].to(torch.float32))).sum()) for i in range(0, flat.numel(), chunk))


def verify_checkpoint(path: str | Path, *, deep: bool = False) -> VerifyReport:
    """Run every registered check on a safetensors checkpoint. Never raises for a bad checkpoint: reports it."""
    try:
        ckpt = Checkpoint.open(path)
    except DshubError as e:
        file = e.path and Path(e.path).name
        return VerifyReport(str(path), [_err("open", file, e.tensor, _error_text(e, file))], 0, 0, ["open"])
    headers: dict[str, ShardHeader | None] = {}
    findings: list[Finding] = []
    for shard in ckpt.shard_names:
        try:
            headers[shard] = ckpt.header(shard)
        except DshubError as e:
            headers[shard] = None
            findings.append(_err("header", shard, e.tensor, _error_text(e, shard)))
    spec = None
    try:
        spec = spec_for(ckpt.config)
        if all(h is not None for h in headers.values()):  # the encoding reads every header; a bad one is reported
            ckpt.encoding  # noqa: B018  (raises on a malformed quantization_config)
        else:
            spec = None  # the checks against the spec need every shard's header
    except CheckpointError as e:
        findings.append(_err("config", "config.json", None, _error_text(e, "config.json")))
        spec = None
    ctx = VerifyContext(ckpt, headers, spec, deep)
    for name, fn in CHECKS.items():
        findings.extend(fn(ctx))
    n_tensors = sum(len(h.tensors) for h in headers.values() if h)
    return VerifyReport(str(path), findings, len(headers), n_tensors, list(CHECKS), ckpt)


def _error_text(e: DshubError, file: str | None) -> str:
    """The finding's message for `e`: the finding names the file and the tensor, and the check names the checkpoint's
    own config.json and index; any other location the error shows (a full path) stays in the message."""
    return error_text(e, file, f"tensor {e.tensor}", "config.json", INDEX_NAME)
