"""Command: convert (every target; the flags become that target's typed options, validated before any work)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from dshub.converters import build_options, run_conversion

from dshub.cli.format import human
from dshub.cli.options import DeviceOpt, DryRunOpt, ExecutorOpt, JsonOpt, RayAddressOpt, WorkersOpt, choice
from dshub.cli.output import out_console, print_json

# --help shows each target's options in their own group
INT4_PANEL, GGUF_PANEL, ONNX_PANEL = "INT4 options (--to int4)", "GGUF options (--to gguf)", "ONNX options (--to onnx)"


def convert(
    path: Annotated[str, typer.Argument(help="Input checkpoint directory (block-FP8 or BF16 safetensors), or a hub id (owner/name[@revision]) already in the HF cache.")],
    to: Annotated[str, choice("--to", "Target: bf16 | int4 | gguf | onnx.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (created; a rerun resumes).")],
    device: DeviceOpt = "auto",
    workers: WorkersOpt = os.cpu_count() or 1,
    drop_mtp: Annotated[bool, typer.Option("--drop-mtp", help="Leave out the MTP (next-token prediction) layers.")] = False,
    dry_run: DryRunOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out that holds no dshub conversion.")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="gguf: model name for general.name and the file names (default: the model's name, e.g. DeepSeek-R1).", rich_help_panel=GGUF_PANEL)] = None,
    json_: JsonOpt = False,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    # ---- int4 ----
    format_: Annotated[Optional[str], typer.Option("--format", help="int4: compressed-tensors | gptq | awq.", rich_help_panel=INT4_PANEL)] = None,
    group_size: Annotated[Optional[int], typer.Option("--group-size", help="int4: 32 | 64 | 128.", rich_help_panel=INT4_PANEL)] = None,
    symmetric: Annotated[Optional[bool], typer.Option("--symmetric/--asymmetric", help="int4, onnx int4: symmetric or with zero points.", rich_help_panel=INT4_PANEL)] = None,
    scope: Annotated[Optional[str], typer.Option("--scope", help="int4: experts | mlp | all-linear.", rich_help_panel=INT4_PANEL)] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", help="int4: regex of modules kept in BF16 (repeatable).", rich_help_panel=INT4_PANEL)] = None,
    # ---- gguf ----
    quant: Annotated[Optional[str], typer.Option("--quant", help="gguf: type or mixture, e.g. Q8_0, Q4_K_M.", rich_help_panel=GGUF_PANEL)] = None,
    split_max_size: Annotated[Optional[str], typer.Option("--split-max-size", help="gguf: max size per split file, e.g. 50G.", rich_help_panel=GGUF_PANEL)] = None,
    split_max_tensors: Annotated[Optional[int], typer.Option("--split-max-tensors", help="gguf: max tensors per split file.", rich_help_panel=GGUF_PANEL)] = None,
    tensor_type: Annotated[Optional[list[str]], typer.Option("--tensor-type", help="gguf: REGEX=TYPE override (repeatable, first match wins).", rich_help_panel=GGUF_PANEL)] = None,
    policy: Annotated[Optional[Path], typer.Option("--policy", help="gguf: YAML quantization policy file or preset name (deepseek-dynamic, deepseek-attn-q8, deepseek-r1-dynamic).", rich_help_panel=GGUF_PANEL)] = None,
    target_size: Annotated[Optional[str], typer.Option("--target-size", help="gguf: byte budget for the whole file, e.g. 200G.", rich_help_panel=GGUF_PANEL)] = None,
    imatrix: Annotated[Optional[Path], typer.Option("--imatrix", help="gguf: llama.cpp importance matrix (GGUF imatrix file).", rich_help_panel=GGUF_PANEL)] = None,
    codec_backend: Annotated[Optional[str], choice("--codec-backend", "gguf: CPU quantizers: auto (every one that loads, fastest first) | torch (the reference) | ggml (llama.cpp's own, from llama-cpp-python) | native (dshub's C K-quant kernels, built on first use); all write the same bytes.", rich_help_panel=GGUF_PANEL)] = None,
    mtp: Annotated[bool, typer.Option("--mtp", help="gguf: keep the MTP layers as blk.N + blk.N.nextn.* (llama.cpp with next-n support).", rich_help_panel=GGUF_PANEL)] = False,
    # ---- onnx ----
    precision: Annotated[Optional[str], choice("--precision", "onnx: fp32 | fp16 | int4 (MatMulNBits).", rich_help_panel=ONNX_PANEL)] = None,
    block_size: Annotated[Optional[int], typer.Option("--block-size", help="onnx int4: 32 | 64 | 128.", rich_help_panel=ONNX_PANEL)] = None,
) -> None:
    """Convert a checkpoint: streaming, bounded memory, atomic files, resumable."""
    # Flags left at None were not given; a target that does not take a given flag refuses it by name.
    opts = build_options(
        to, out=out, device=device, workers=workers, drop_mtp=drop_mtp, dry_run=dry_run, force=force, name=name,
        format=format_, group_size=group_size, symmetric=symmetric, scope=scope, ignore=tuple(ignore) if ignore else None,
        quant=quant, split_max_size=split_max_size, split_max_tensors=split_max_tensors,
        tensor_type=tuple(tensor_type) if tensor_type else None, policy=str(policy) if policy else None,
        target_size=target_size, imatrix=imatrix, mtp=True if mtp else None, precision=precision, block_size=block_size,
        codec_backend=codec_backend)
    result = run_conversion(path, opts, executor=executor, ray_address=ray_address)
    doc = result.to_dict()
    if json_:
        print_json(doc)
        return
    if result.dry_run and doc.get("tensor_table"):
        print_tensor_table(doc)
    verb = "would write" if result.dry_run else "wrote"
    out_console.print(f"{verb} {len(doc['files'])} files, {human(doc['total_bytes'])} to {doc['out']} (device {doc['device']})")
    if result.skipped:
        out_console.print(f"resumed: {len(result.skipped)} finished files checked and kept")


def print_tensor_table(doc: dict[str, Any]) -> None:
    """The per-tensor plan (GGUF --dry-run): name, shape, type (and what was asked when it fell back), size."""
    table = Table("tensor", "shape", "type", "size", box=None, pad_edge=False)
    for t in doc["tensor_table"]:
        kind = t["type"] if t.get("asked") in (None, t["type"]) else f"{t['type']} (asked {t['asked']})"
        table.add_row(t["name"], "x".join(str(d) for d in t["shape"]), kind, human(t["bytes"]))
    out_console.print(table)
    bpw = f", {doc['bits_per_weight']:.3f} bits per weight" if doc.get("bits_per_weight") else ""
    out_console.print(f"{len(doc['tensor_table'])} tensors, {human(doc['total_bytes'])}{bpw}")
