"""GPU kernel benchmark: each Triton codec's effective bandwidth vs a device-to-device copy measured in
the same run, its bit-exactness on the device, and whole synthetic conversions on the GPU vs the CPU.

    python bench/kernels.py                      # on a GPU machine; prints a markdown table
    python bench/kernels.py --results bench/RESULTS.md   # also appends the table there
    python bench/kernels.py --smoke              # no GPU: tiny shapes in the Triton interpreter (checks the script)

Effective bandwidth = (bytes read + bytes written) / median kernel time (CUDA events, `--repeats`).
The copy baseline moves the same number of bytes (copies half of them). Targets (issue 8): dequant,
INT4 and Q8_0 quantization >= 0.8x copy bandwidth; Q4_K >= 0.3x.
Exit status: 0 all ran and matched the references, 1 a mismatch or failure, 2 no GPU (without --smoke).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


def setup(smoke: bool) -> None:
    if smoke:
        os.environ["TRITON_INTERPRET"] = "1"
    sys.path.insert(0, str(ROOT))


@dataclass
class Case:
    """One kernel measurement: `make()` -> (host args, bytes read, bytes written); the target ratio."""

    codec: str
    make: Callable[[], tuple[tuple[Any, ...], int, int]]
    target: float
    note: str = ""


def cases(big: bool) -> list[Case]:
    import torch

    from dshub.quant.int4 import Int4Scheme, quantize_int4

    # DeepSeek-V3 shapes: a dense MLP weight [18432, 7168]; an expert [2048, 7168]; V4 expert stack rows.
    rows, cols = (18432, 7168) if big else (300, 512)
    kq_rows = rows if big else 8  # the interpreter runs K-quant searches at a few super-blocks per second
    gen = torch.Generator().manual_seed(0)

    def fp8(r: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = (torch.randn(r, c, generator=gen) * 50).to(torch.float8_e4m3fn)
        return w, torch.rand(-(-r // 128), -(-c // 128), generator=gen) * 1e-3 + 1e-6

    def dequant(out_bytes: int) -> Callable[[], tuple]:
        def make() -> tuple:
            w, s = fp8(rows, cols)
            return (w, s), w.numel() + s.numel() * 4, w.numel() * out_bytes
        return make

    def mxfp4() -> tuple:
        q = torch.randint(0, 256, (rows, cols // 2), dtype=torch.uint8, generator=gen)
        s = torch.randint(110, 140, (rows, cols // 32), dtype=torch.uint8, generator=gen)
        return (q, s), q.numel() + s.numel(), rows * cols * 2

    scheme = Int4Scheme(128, True, torch.bfloat16)

    def int4_fp8() -> tuple:
        w, s = fp8(rows, cols)
        return (w, s, scheme), w.numel() + s.numel() * 4, w.numel() + w.numel() // 128 * 2

    def int4_pack() -> tuple:
        t = quantize_int4(torch.randn(rows, cols, generator=gen), scheme)
        return (t,), t.q.numel() + t.scale.numel() * 2, t.q.numel() // 2 + t.scale.numel() * 2

    def gguf(block_bytes: int, block: int) -> Callable[[], tuple]:
        def make() -> tuple:
            x = torch.randn(rows if block == 32 else kq_rows, cols, generator=gen) * 0.02
            return (x,), x.numel() * 4, x.numel() // block * block_bytes
        return make

    return [
        Case("fp8_block_dequant_bf16", dequant(2), 0.8),
        Case("fp8_block_dequant_f32", dequant(4), 0.8),
        Case("mxfp4_dequant_bf16", mxfp4, 0.8),
        Case("int4_quantize_fp8", int4_fp8, 0.8, "fused FP8 dequant, g128 sym"),
        Case("int4_pack_compressed_tensors", int4_pack, 0.8),
        Case("gguf_Q8_0", gguf(34, 32), 0.8),
        Case("gguf_Q4_0", gguf(18, 32), 0.8),
        Case("gguf_Q5_0", gguf(22, 32), 0.8),
        Case("gguf_Q4_K", gguf(144, 256), 0.3),
        Case("gguf_Q6_K", gguf(210, 256), 0.3),
    ]


class Timer:
    """Median seconds of `fn()` over repeats: CUDA events on a GPU, perf_counter in the interpreter."""

    def __init__(self, gpu: bool, repeats: int, warmup: int):
        self.gpu, self.repeats, self.warmup = gpu, repeats, warmup

    def __call__(self, fn: Callable[[], Any]) -> float:
        import torch

        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.repeats):
            if self.gpu:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


def run_kernels(gpu: bool, big: bool, timer: Timer) -> list[dict[str, Any]]:
    import torch

    import dshub.quant.gguf  # noqa: F401  (registers the GGUF references)
    from dshub.quant.registry import CODECS
    from dshub.quant.triton.parity import kernel_device

    dev = kernel_device()
    rows_out = []
    for case in cases(big):
        row: dict[str, Any] = {"codec": case.codec, "target": case.target, "note": case.note}
        if (case.codec, "cuda") not in CODECS or (case.codec, "cpu") not in CODECS:
            rows_out.append({**row, "status": "no kernel"})
            continue
        try:
            row.update(measure(case, dev, timer))
        except Exception as e:  # report and go on with the other kernels
            row["status"] = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        rows_out.append(row)
        if gpu:
            torch.cuda.empty_cache()  # the case's device tensors died with measure()'s frame
    return rows_out


def measure(case: Case, dev: Any, timer: Timer) -> dict[str, Any]:
    """Run one kernel on `dev`, compare it bit for bit with the torch reference, time it and a same-size copy."""
    import torch

    from dshub.quant.device import map_tensors, tensors_in
    from dshub.quant.registry import CODECS
    from dshub.quant.triton import kernel
    from dshub.quant.triton.parity import bit_mismatch

    args, nread, nwritten = case.make()
    dev_args = map_tensors(args, lambda t: t.to(dev))
    fn = kernel(case.codec)
    gt, wt = tensors_in(fn(*dev_args)), tensors_in(CODECS.get((case.codec, "cpu"))(*args))
    diffs = [bit_mismatch(g, w) for g, w in zip(gt, wt)] if len(gt) == len(wt) else ["different outputs"]
    mismatch = next((d for d in diffs if d), None)
    seconds = timer(lambda: fn(*dev_args))
    moved = nread + nwritten
    src = torch.empty(moved // 2, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    copy_s = timer(lambda: dst.copy_(src))
    bw, copy_bw = moved / seconds, (2 * (moved // 2)) / copy_s
    return dict(status="MISMATCH: " + mismatch if mismatch else "bit-exact", ms=seconds * 1e3, gbps=bw / 1e9,
                copy_gbps=copy_bw / 1e9, ratio=bw / copy_bw, mbytes=moved / 1e6)


def run_conversions(preset: str, targets: list[tuple[str, dict[str, Any]]], workdir: Path) -> list[dict[str, Any]]:
    """Whole conversions of a synthetic checkpoint on the CPU and the GPU: time ratio and byte identity."""
    import filecmp

    try:
        from dshub.converters import build_options, run_conversion
        from dshub.checkpoint.synth import write_synthetic

        src = workdir / f"synth-{preset}"
        if not src.exists():
            write_synthetic(src, preset, seed=0)
    except Exception as e:
        return [{"target": t, "params": p, "status": f"FAILED: {type(e).__name__}: {e}"} for t, p in targets]
    rows = []
    for target, params in targets:
        row: dict[str, Any] = {"target": target, "params": params}
        try:
            secs = {}
            for device in ("cpu", "cuda"):
                out = workdir / f"{target}-{device}"
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                run_conversion(src, build_options(target, out=out, device=device, **dict(params)), progress=False)
                secs[device] = time.perf_counter() - t0
            a, b = workdir / f"{target}-cpu", workdir / f"{target}-cuda"
            names = sorted(p.name for p in a.iterdir())
            _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
            same = names == sorted(p.name for p in b.iterdir()) and not mismatch and not errors
            row.update(cpu_s=secs["cpu"], cuda_s=secs["cuda"], speedup=secs["cpu"] / secs["cuda"],
                       identical=same, differing=mismatch + errors)
        except Exception as e:
            row["status"] = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
        rows.append(row)
    return rows


def card() -> str:
    import torch

    if os.environ.get("TRITON_INTERPRET"):
        return "no GPU: Triton interpreter on the CPU (smoke run; numbers are not bandwidths)"
    p = torch.cuda.get_device_properties(0)
    return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"


def markdown(kern: list[dict[str, Any]], conv: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"## GPU kernels (bench/kernels.py), {meta['date']}", "",
             f"Card: {meta['card']}. torch {meta['torch']}, triton {meta['triton']}.", "",
             "| codec | MB moved | ms (median) | GB/s | copy GB/s | ratio | target | on device |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in kern:
        if "ratio" in r:
            ok = ("ok" if r["ratio"] >= r["target"] else "BELOW") if meta["gpu"] else "not a GPU timing"
            lines.append(f"| {r['codec']} | {r['mbytes']:.0f} | {r['ms']:.3f} | {r['gbps']:.0f} | {r['copy_gbps']:.0f} | "
                         f"{r['ratio']:.2f} ({ok}) | {r['target']:.1f} | {r['status']} |")
        else:
            lines.append(f"| {r['codec']} | | | | | | {r['target']:.1f} | {r['status']} |")
    if conv:
        lines += ["", f"Whole conversion of `dshub synth --preset {meta['preset']}`, `--device cuda` vs `--device cpu`:", "",
                  "| target | CPU s | GPU s | speed-up | files identical |", "|---|---:|---:|---:|---|"]
        for r in conv:
            label = r["target"] + (f" {r['params']}" if r["params"] else "")
            if "speedup" in r:
                lines.append(f"| {label} | {r['cpu_s']:.2f} | {r['cuda_s']:.2f} | {r['speedup']:.2f}x | "
                             f"{'yes' if r['identical'] else 'NO: ' + ', '.join(r['differing'])} |")
            else:
                lines.append(f"| {label} | | | | {r['status']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="no GPU needed: tiny shapes in the Triton interpreter")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--preset", default=None, help="synthetic checkpoint for whole conversions (default: bench; tiny with --smoke)")
    ap.add_argument("--no-convert", action="store_true", help="kernels only")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=None, help="append the markdown table to this file")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of markdown")
    a = ap.parse_args()
    setup(a.smoke)
    import torch
    import triton

    if not a.smoke and not torch.cuda.is_available():
        print("bench/kernels.py: no CUDA GPU visible; run it on a GPU machine (or --smoke to check the script)", file=sys.stderr)
        return 2
    gpu = not a.smoke
    timer = Timer(gpu, a.repeats if gpu else 1, a.warmup if gpu else 0)
    kern = run_kernels(gpu, big=gpu, timer=timer)
    preset = a.preset or ("bench" if gpu else "tiny")
    conv: list[dict[str, Any]] = []
    if not a.no_convert:
        workdir = a.workdir or Path(tempfile.mkdtemp(prefix="dshub-kbench-"))
        targets = [("bf16", {}), ("int4", {"format": "compressed-tensors"}), ("gguf", {"quant": "Q8_0"})]
        try:
            conv = run_conversions(preset, targets, workdir)
        finally:
            if a.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    meta = {"date": datetime.date.today().isoformat(), "card": card(), "torch": torch.__version__,
            "triton": triton.__version__, "preset": preset, "gpu": gpu}
    if a.json:
        print(json.dumps({"meta": meta, "kernels": kern, "conversions": conv}, indent=2, sort_keys=True))
    else:
        print(markdown(kern, conv, meta))
    if a.results:
        with open(a.results, "a") as f:
            f.write("\n" + markdown(kern, conv, meta))
    bad = [r for r in kern if r["status"] not in ("bit-exact", "no kernel")] + [r for r in conv if not r.get("identical")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
