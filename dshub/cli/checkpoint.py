"""Commands: synth, info, verify."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dshub.checkpoint.synth import PRESETS, write_synthetic
from dshub.cli.download import hash_report, print_hash_report
from dshub.cli.format import human, plural
from dshub.cli.gguf_view import print_gguf_info
from dshub.cli.options import JsonOpt, PathArg, choice
from dshub.cli.output import failure, out_console, print_json
from dshub.summary import checkpoint_info
from dshub.checks import verify as run_verify
from dshub.checks.findings import VerifyReport
from dshub.hub.hash_check import HashReport


def synth(
    out: Annotated[Path, typer.Argument(help="Directory to write the synthetic checkpoint into.")],
    preset: Annotated[str, choice("--preset", f"One of: {', '.join(PRESETS)}.")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed (same seed => same bytes).")] = 0,
    json_: JsonOpt = False,
) -> None:
    """Write a small block-FP8 DeepSeek-V3 checkpoint with the real layout (no network needed)."""
    res = write_synthetic(out, preset, seed)
    if json_:
        print_json(res)
    else:
        out_console.print(f"wrote {res['preset']} checkpoint to {res['path']}: {res['shards']} shards, {res['tensors']} tensors, {human(res['bytes'])}")


def print_onnx_info(doc: dict[str, Any]) -> None:
    """An ONNX output: precision (and MatMulNBits blocks), layers, operators, files."""
    q = doc["quantization"]
    how = (f"int4 MatMulNBits, block {'/'.join(map(str, q['block_size']))}, "
           f"{'with zero points' if q['with_zero_points'] else 'symmetric'}, {q['matmuls']} matmuls "
           f"({q['float_matmuls']} left in float)") if q else str(doc["precision"])
    att = doc["attention"]
    out_console.print(f"[bold]ONNX decoder[/] at {escape(doc['path'])}: {escape(how)}", soft_wrap=True)
    out_console.print(f"layers {doc['layers']}, attention heads {att['heads']} (KV heads {att['kv_heads']}), "
                      f"opsets {', '.join(f'{k} {v}' for k, v in doc['opset'].items())}", soft_wrap=True, markup=False)
    out_console.print("operators: " + ", ".join(f"{k} {v}" for k, v in doc["operators"].items()), soft_wrap=True, markup=False)
    out_console.print(f"files: model.onnx + {len(doc['files'])} data files, {human(doc['bytes'])}; "
                      f"genai_config.json {'yes' if doc['genai_config'] else 'no'}, tokenizer {'yes' if doc['tokenizer'] else 'no'}",
                      soft_wrap=True, markup=False)


def info(path: PathArg, json_: JsonOpt = False) -> None:
    """Architecture, parameter counts, encodings, shards and the size of each output format."""
    doc = checkpoint_info(path)
    if json_:
        print_json(doc)
        return
    if doc.get("format") == "gguf":
        print_gguf_info(doc)
        return
    if doc.get("format") == "onnx":
        print_onnx_info(doc)
        return
    p = doc["params"]
    out_console.print(f"[bold]{escape(str(doc['architecture']))}[/] ({escape(str(doc['model_type']))}) at {escape(str(doc['path']))}")
    if doc["experts"]["routed"]:
        out_console.print(f"layers {doc['layers']} (+{doc['mtp_layers']} MTP, {doc['dense_layers']} dense), hidden {doc['hidden_size']}, "
                          f"experts {doc['experts']['routed']} routed + {doc['experts']['shared']} shared, {doc['experts']['per_token']} per token")
    else:  # a dense decoder (the R1 distills)
        att = doc["attention"]
        out_console.print(f"layers {doc['layers']} (dense), hidden {doc['hidden_size']}, attention heads {att['heads']} "
                          f"(KV heads {att['kv_heads'] or att['heads']})")
    out_console.print(f"params: total {p['total'] / 1e9:.3f} B, active {p['active'] / 1e9:.3f} B, MTP {p['mtp'] / 1e9:.3f} B")
    out_console.print(f"encoding: {escape(doc['kind'])}")
    if doc.get("int4"):
        i = doc["int4"]
        out_console.print(f"int4: {i['format']} {'sym' if i['symmetric'] else 'asym'} group {i['group_size']}, {i['quantized_modules']} modules "
                          f"({', '.join(i['quantized_roles'])}), {human(i['int4_bytes'])}; {i['unquantized_linear']} linear modules unquantized")
    out_console.print("dtypes: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in doc["dtype_census"].items()))
    out_console.print(f"shards: {doc['shards']}, tensors: {doc['tensors']}, {human(doc['bytes'])}")
    table = Table("output format", "size (weights)")
    for fmt, size in doc["output_sizes"].items():
        table.add_row(fmt, human(size))
    out_console.print(table)


def verify(
    path: PathArg,
    deep: Annotated[bool, typer.Option("--deep", help="Also scan every value for NaN/Inf (reads all data).")] = False,
    hashes: Annotated[bool, typer.Option("--hashes", help="Also sha256 every file against the download manifest (or a dshub output's dshub-manifest.json).")] = False,
    against_hub: Annotated[Optional[str], typer.Option("--against-hub", metavar="REPO[@REV]", help="Check sha256 against the hub's metadata instead.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Check headers, index, tensor set and shapes, and FP8 scales (and file hashes). Exit 0 clean, 1 with findings."""
    report = run_verify(path, deep=deep)
    hreport = hash_report(path, hashes, against_hub)
    ok = report.ok and (hreport is None or hreport.ok)
    if json_:
        print_json(report.to_dict() | ({"hashes": hreport.to_dict()} if hreport else {}) | {"ok": ok},
                   error=None if ok else verify_failure(report, hreport))
    else:
        for f in report.findings:
            out_console.print(f"{f.severity}: {f}", soft_wrap=True, markup=False)
        status = "ok" if report.ok else f"FAILED ({sum(f.severity == 'error' for f in report.findings)} errors)"
        out_console.print(f"{escape(report.path)}: {status} — {report.shards} shards, {report.tensors} tensors, checks: {', '.join(report.checks)}")
        if hreport:
            print_hash_report(hreport)
    if not ok:
        raise typer.Exit(1)


def verify_failure(report: VerifyReport, hreport: HashReport | None) -> dict:
    """The `error` of a failed verify: the first error found (its file and tensor) and how many there are."""
    errors = [f for f in report.findings if f.severity == "error"]
    bad_hashes = list(hreport.findings) if hreport and not hreport.ok else []
    first = errors[0] if errors else None
    if first is not None:
        counts = [plural(len(errors), "error"), *([plural(len(bad_hashes), "bad hash")] if bad_hashes else [])]
        message = f"{first} ({', '.join(counts)})"
        return failure(message, path=first.file or report.path, tensor=first.tensor)
    h = bad_hashes[0]
    return failure(f"{h.message} ({plural(len(bad_hashes), 'bad hash')})", code="hash_mismatch", path=h.path)
