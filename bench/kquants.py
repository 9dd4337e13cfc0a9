"""FP8 -> GGUF Q4_K_M benchmark: dshub's one pass vs llama.cpp's two steps, in one run.

llama.cpp's path: `convert_hf_to_gguf.py --outtype bf16` (an intermediate file), then `llama_model_quantize` to Q4_K_M
(llama-quantize's library call, through llama-cpp-python). dshub's: `dshub convert --to gguf --quant Q4_K_M`, no
intermediate, twice: with the fused (torch.compile) K-quant kernels, the default, after a warm-up child that compiles
them once (Inductor caches them on disk; the warm-up's time is reported separately), and with the eager torch path
(`DSHUB_KQUANT_COMPILE=0`), which skips importing the compiler stack. Every step runs in its own child process; the parent takes wall time and peak RSS (wait4's
ru_maxrss) of each, and the bytes each path writes to disk (intermediates included). The input is read once first so
every step sees the same warm page cache. Also measured in-process on one core: Q4_K quantization throughput of
dshub's torch code vs llama.cpp's C reference (`ggml_quantize_chunk`, the function llama-quantize calls), on the
same float32 rows.

    python bench/kquants.py [--preset bench] [--workers 2] [--workdir /tmp/dshub-bench-kquants] [--results]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]  # keep `gguf` = the package
TARGETS = {"time": 1.0, "rss": 0.25}
QUANTIZE = """
import ctypes, sys, llama_cpp
src, dst, ftype, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.nthread = ftype, threads
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)))
"""
WARMUP = """
import torch
torch.set_num_threads(1)  # as the converter's workers: the kernels are compiled per thread count
from dshub.quant.gguf.kquants import QUANTIZERS
x = torch.randn(256, 1024) * 0.02
for t in ("Q4_K", "Q6_K", "Q5_K", "Q2_K"):
    QUANTIZERS[t](x)
"""


def _gguf_bench():
    """bench/gguf.py's helpers (vendor lookup, timed child, llama.cpp converter runner), loaded under another name."""
    spec = importlib.util.spec_from_file_location("bench_gguf", REPO / "bench" / "gguf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def throughput(rows: int = 256, cols: int = 7168, reps: int = 3) -> dict[str, float]:
    """Q4_K elements per second on one core: dshub's torch reference vs llama.cpp's C (same rows, best of reps)."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from llama_oracle import ggml_quantize  # noqa: E402
    from dshub.quant.gguf.kquants import QUANTIZERS

    torch.set_num_threads(1)
    x = (torch.randn(rows, cols, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16).float()
    ours, ref = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        a = QUANTIZERS["Q4_K"](x)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = ggml_quantize("Q4_K", x.numpy())
        ref.append(time.perf_counter() - t0)
    assert (a.numpy() == b).all(), "Q4_K bytes differ from llama.cpp"
    n = x.numel()
    return {"dshub_melem_s": round(n / min(ours) / 1e6, 2), "llama_cpp_melem_s": round(n / min(ref) / 1e6, 2),
            "ratio": round(min(ref) / min(ours), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dshub-bench-kquants"))
    ap.add_argument("--results", action="store_true", help="append a section to bench/RESULTS.md")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from dshub.checkpoint.synth import write_synthetic
    from dshub.quant.gguf.types import FILE_TYPES

    gb = _gguf_bench()
    src = args.workdir / f"{args.preset}-fp8"
    if not (src / "config.json").exists():
        write_synthetic(src, args.preset)
    vendor = gb.llama_cpp_vendor(args.workdir)
    for f in src.iterdir():
        f.read_bytes()

    ours_dir, bf16, ref = args.workdir / "dshub-out", args.workdir / "llama-bf16.gguf", args.workdir / "llama-q4_k_m.gguf"
    shutil.rmtree(ours_dir, ignore_errors=True)
    for p in (bf16, ref):
        p.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "gguf", "--quant", "Q4_K_M", "--out", str(ours_dir),
           "--workers", str(args.workers), "--device", "cpu"]
    warmup = gb.timed([sys.executable, "-c", WARMUP], env)
    ours = gb.timed(cmd, env)
    shutil.rmtree(ours_dir / "eager", ignore_errors=True)
    eager = gb.timed(cmd[:-5] + [str(ours_dir / "eager")] + cmd[-4:], {**env, "DSHUB_KQUANT_COMPILE": "0"})
    eager["disk_bytes"] = sum(f.stat().st_size for f in (ours_dir / "eager").iterdir() if f.is_file())
    step1 = gb.timed([sys.executable, "-c", gb.RUNNER, str(vendor), str(src), str(bf16), "bf16"], {**os.environ, "NO_LOCAL_GGUF": "1"})
    step2 = gb.timed([sys.executable, "-c", QUANTIZE, str(bf16), str(ref), str(FILE_TYPES["Q4_K_M"]), str(args.workers)])
    out_file = next(ours_dir.glob("*.gguf"))
    two = {"wall_s": round(step1["wall_s"] + step2["wall_s"], 2), "cpu_s": round(step1["cpu_s"] + step2["cpu_s"], 2),
           "peak_rss_mb": max(step1["peak_rss_mb"], step2["peak_rss_mb"]),
           "disk_bytes": bf16.stat().st_size + ref.stat().st_size}
    ours["disk_bytes"] = sum(f.stat().st_size for f in ours_dir.iterdir() if f.is_file())
    ours["warmup_compile_s"] = warmup["wall_s"]
    check = gb.compare(out_file, ref)
    import gguf

    types_a = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out_file).tensors}
    types_b = {t.name: t.tensor_type.name for t in gguf.GGUFReader(ref).tensors}
    check["same_types"] = sum(types_a[n] == types_b.get(n) for n in types_a)
    check["fused_equals_eager"] = gb.compare(out_file, next((ours_dir / "eager").glob("*.gguf")))["byte_identical"]
    doc = {
        "preset": args.preset, "workers": args.workers, "input_bytes": sum(f.stat().st_size for f in src.iterdir()),
        "output_bytes": out_file.stat().st_size, "dshub": ours, "dshub_eager": eager,
        "llama_cpp": {"convert_bf16": step1, "quantize": step2, "total": two},
        "time_ratio": round(ours["wall_s"] / two["wall_s"], 3), "rss_ratio": round(ours["peak_rss_mb"] / two["peak_rss_mb"], 3),
        "eager_time_ratio": round(eager["wall_s"] / two["wall_s"], 3), "eager_rss_ratio": round(eager["peak_rss_mb"] / two["peak_rss_mb"], 3),
        "disk_ratio": round(ours["disk_bytes"] / two["disk_bytes"], 3), "targets": TARGETS, "output_check": check,
        "q4_k_per_core": throughput(), "llama_cpp_python": vendor.parts[-3],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
    }
    print(json.dumps(doc, indent=2))
    if args.results:
        append_results(REPO / "bench" / "RESULTS.md", doc)


def append_results(path: Path, d: dict) -> None:
    ok = lambda r, t: "met" if r <= t else "NOT met"  # noqa: E731
    ll, c, q = d["llama_cpp"], d["output_check"], d["q4_k_per_core"]
    text = f"""
## GGUF K-quants: FP8 -> Q4_K_M, dshub one pass vs llama.cpp two steps (`python bench/kquants.py --preset {d['preset']} --workers {d['workers']}`)

Same run, same warm input ({d['input_bytes'] / 1e6:.0f} MB block-FP8 `{d['preset']}` preset), {d['machine']}; llama.cpp from
{d['llama_cpp_python']} (portable build, `-DGGML_NATIVE=OFF`). Each step is a child process (wall time, CPU time, peak RSS).

| path | wall s | CPU s | peak RSS MB | bytes written |
|---|---|---|---|---|
| llama.cpp `convert_hf_to_gguf.py --outtype bf16` | {ll['convert_bf16']['wall_s']} | {ll['convert_bf16']['cpu_s']} | {ll['convert_bf16']['peak_rss_mb']} | |
| llama.cpp `llama_model_quantize` BF16 -> Q4_K_M ({d['workers']} threads) | {ll['quantize']['wall_s']} | {ll['quantize']['cpu_s']} | {ll['quantize']['peak_rss_mb']} | |
| **llama.cpp, both steps** | {ll['total']['wall_s']} | {ll['total']['cpu_s']} | {ll['total']['peak_rss_mb']} | {ll['total']['disk_bytes'] / 1e6:.0f} MB |
| **`dshub convert --to gguf --quant Q4_K_M --workers {d['workers']}`** (fused kernels, default) | {d['dshub']['wall_s']} | {d['dshub']['cpu_s']} | {d['dshub']['peak_rss_mb']} | {d['dshub']['disk_bytes'] / 1e6:.0f} MB |
| same, eager torch path (`DSHUB_KQUANT_COMPILE=0`) | {d['dshub_eager']['wall_s']} | {d['dshub_eager']['cpu_s']} | {d['dshub_eager']['peak_rss_mb']} | {d['dshub_eager']['disk_bytes'] / 1e6:.0f} MB |

- Fused (default): wall time ratio {d['time_ratio']} (target <= {TARGETS['time']}: {ok(d['time_ratio'], TARGETS['time'])}); peak RSS
  ratio {d['rss_ratio']} (target <= {TARGETS['rss']}: {ok(d['rss_ratio'], TARGETS['rss'])}). The kernels were compiled once before, in
  {d['dshub']['warmup_compile_s']} s (first use on a machine; Inductor's on-disk cache serves later runs).
- Eager: wall time ratio {d['eager_time_ratio']} ({ok(d['eager_time_ratio'], TARGETS['time'])}); peak RSS ratio {d['eager_rss_ratio']}
  ({ok(d['eager_rss_ratio'], TARGETS['rss'])}). Bytes written: {d['disk_ratio']}x of llama.cpp's two steps (no intermediate file).
- Q4_K on one core, 256 x 7168 float32 rows, same bytes: dshub {q['dshub_melem_s']} M elements/s, llama.cpp's C reference
  {q['llama_cpp_melem_s']} M elements/s (dshub at {q['ratio']}x of C's speed).
- Output: the fused and eager runs wrote the same bytes ({c.get('fused_equals_eager')} of {c['tensors']} tensors identical).
  {c['same_types']} of {c['tensors']} tensors have llama.cpp's type, {c['byte_identical']} are byte-identical with it. The two paths
  quantize different inputs: llama.cpp rounds the FP8-dequantized weights to BF16 first, dshub quantizes the exact
  float32 values (given the same float32 input, every tensor is byte-identical: tests/converters/gguf/test_mixtures_llama.py).
"""
    with open(path, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
