"""FP8 -> GGUF K-quants and IQ types: dshub's one pass vs llama.cpp's two steps, in one run.

llama.cpp's path: `convert_hf_to_gguf.py --outtype bf16` (an intermediate file, written once and counted in every
total), then `llama_model_quantize` (llama-quantize's library call, through llama-cpp-python) to Q4_K_M, Q2_K and
IQ2_XXS. dshub's: `dshub convert --to gguf --quant TYPE`, no intermediate, with the default codec backend (`auto`:
dshub's native C kernels for the K-quants and the FP8 dequantization, ggml's own quantizers through ctypes for the rest),
again with `--codec-backend ggml` (ggml for every quantized type) for the K-quant mixtures, and for Q4_K_M also with
`--codec-backend torch` (the torch reference with its fused torch.compile kernels, after a warm-up child that compiles
them). IQ2_XXS needs an importance matrix: both paths
get the same synthetic one (dshub reads the GGUF imatrix file; llama.cpp's child loads it as llama-quantize does).
Every step is a child process; the parent takes wall time, CPU time and peak RSS (wait4's ru_maxrss) of each, and the
bytes each path writes (intermediates included). The input is read once first so every step sees a warm page cache.
Also measured in-process on one core: Q4_K and IQ2_XXS throughput of dshub's codecs, torch vs ggml, same rows.

    python bench/kquants.py [--preset bench] [--workers 2] [--workdir /tmp/dshub-bench-kquants] [--results]
"""
from __future__ import annotations

import argparse
import filecmp
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]  # keep `gguf` = the package
TARGETS = {"time": 0.5, "rss": 0.25}
QUANTS = ("Q4_K_M", "Q2_K", "IQ2_XXS")
NEEDS_IMATRIX = ("IQ2_XXS",)
QUANTIZE = """
import ctypes, sys
import numpy as np
import gguf, llama_cpp
src, dst, ftype, threads, imx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
p = llama_cpp.llama_model_quantize_default_params()
p.ftype, p.nthread = ftype, threads
if imx != "-":  # llama-quantize --imatrix: in_sum2 / counts per slice (count 0: ones)
    t = {x.name: x for x in gguf.GGUFReader(imx).tensors}
    data = []
    for name in [n[:-8] for n in t if n.endswith(".in_sum2")]:
        s = np.asarray(t[name + ".in_sum2"].data, np.float32).reshape(-1)
        c = np.rint(np.asarray(t[name + ".counts"].data, np.float64).reshape(-1)).astype(np.float32)
        s = s.reshape(c.size, -1)
        v = np.where(c[:, None] > 0, s / np.maximum(c, 1)[:, None], 1).astype(np.float32).reshape(-1)
        data.append((name.encode(), np.ascontiguousarray(v)))
    item = llama_cpp.llama_model_imatrix_data
    arr = (item * (len(data) + 1))()
    for i, (n, v) in enumerate(data):
        arr[i] = item(n, v.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), v.size)
    arr[len(data)] = item(None, None, 0)
    p.imatrix = ctypes.cast(arr, ctypes.POINTER(item))
sys.exit(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p)))
"""
HELPER = """
import json, sys
from pathlib import Path
if sys.argv[1] == "prepare":  # the synthetic checkpoint (once) and its imatrix
    from dshub.checkpoint.synth import write_synthetic
    src, preset, imx = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    if not (src / "config.json").exists():
        write_synthetic(src, preset)
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_kquants", Path(sys.argv[5]) / "bench" / "kquants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.make_imatrix(src, imx)
else:  # compare two GGUF files: types and bytes
    import gguf, numpy as np
    a = {t.name: t for t in gguf.GGUFReader(sys.argv[2]).tensors}
    b = {t.name: t for t in gguf.GGUFReader(sys.argv[3]).tensors}
    same = sum(1 for n in a.keys() & b.keys() if a[n].tensor_type == b[n].tensor_type
               and np.array_equal(np.asarray(a[n].data).view(np.uint8).reshape(-1), np.asarray(b[n].data).view(np.uint8).reshape(-1)))
    types = sum(1 for n in a if n in b and a[n].tensor_type == b[n].tensor_type)
    print(json.dumps({"tensors": len(a), "reference_tensors": len(b), "byte_identical": same, "same_types": types}))
"""
WARMUP = """
import torch
torch.set_num_threads(1)  # as the converter's workers: the kernels are compiled per thread count
from dshub.quant.gguf.kquants import QUANTIZERS
x = torch.randn(256, 1024) * 0.02
for t in ("Q4_K", "Q6_K", "Q5_K"):
    QUANTIZERS[t](x)
"""


def _gguf_bench():
    """bench/gguf.py's helpers (vendor lookup, timed child, llama.cpp converter runner), loaded under another name."""
    spec = importlib.util.spec_from_file_location("bench_gguf", REPO / "bench" / "gguf.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "bench"))  # for its `from benchlib import ...`; it takes bench/ off the path again
    spec.loader.exec_module(mod)
    return mod


def throughput(rows: int = 64, cols: int = 7168, reps: int = 5) -> dict[str, dict[str, float]]:
    """M elements/s on one core: the torch reference vs the ggml and native backends on the same rows (best of reps)."""
    import torch

    from dshub.quant.registry import get_codec, is_registered

    torch.set_num_threads(1)
    x = (torch.randn(rows, cols, generator=torch.Generator().manual_seed(0)) * 0.02).to(torch.bfloat16).float()
    imatrix = torch.rand(cols, generator=torch.Generator().manual_seed(1)) + 0.1
    out = {}
    for t, kw in (("Q4_K", {}), ("Q6_K", {}), ("Q2_K", {}), ("IQ2_XXS", {"imatrix": imatrix})):
        speeds = {}
        for backend in ("torch", "ggml", "native"):
            if not is_registered(f"gguf_{t}", "cpu" if backend == "torch" else backend):
                continue  # no torch implementation of this type
            codec = get_codec(f"gguf_{t}", "cpu", backend)
            codec(x[:1], **kw)  # grids / kernels ready
            best = min(_timed(codec, x, kw) for _ in range(reps))
            speeds[f"{backend}_melem_s"] = round(x.numel() / best / 1e6, 2)
        out[t] = speeds
    return out


def _timed(codec, x, kw) -> float:
    t0 = time.perf_counter()
    codec(x, **kw)
    return time.perf_counter() - t0


def make_imatrix(src: Path, path: Path) -> Path:
    """A synthetic importance matrix for every tensor dshub quantizes in `src` (from its shape-only plan)."""
    from dshub.converters import build_options, run_conversion
    from dshub.converters.gguf.imatrix import synthetic_entries, write_imatrix

    plan = run_conversion(src, build_options("gguf", out=path.parent / "plan", quant="Q4_K_M", dry_run=True), progress=False)
    tensors = [(t["name"], tuple(t["shape"])) for t in plan.to_dict()["tensor_table"] if t["type"] != "F32"]
    return write_imatrix(path, synthetic_entries(tensors, seed=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dshub-bench-kquants"))
    ap.add_argument("--quants", default=",".join(QUANTS))
    ap.add_argument("--iq-preset", default="tiny", help="input for the imatrix types (their grid searches are slow)")
    ap.add_argument("--no-torch", action="store_true", help="leave out the torch-backend Q4_K_M run")
    ap.add_argument("--no-ggml-rows", action="store_true", help="leave out the `--codec-backend ggml` runs")
    ap.add_argument("--results", action="store_true", help="append a section to bench/RESULTS.md")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from dshub.quant.gguf.types import FILE_TYPES

    gb = _gguf_bench()
    vendor = gb.llama_cpp_vendor(args.workdir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    inputs: dict[str, dict] = {}

    def prepared(preset: str) -> dict:
        """The preset's FP8 checkpoint (warm), its imatrix, and llama.cpp's first step on it (timed once)."""
        if preset not in inputs:
            src = args.workdir / f"{preset}-fp8"
            imx = args.workdir / f"{preset}-imatrix.gguf"
            # in children: this process stays small, since a child's peak RSS (ru_maxrss) starts at its parent's
            subprocess.run([sys.executable, "-c", HELPER, "prepare", str(src), preset, str(imx), str(REPO)], env=env, check=True)
            for f in src.iterdir():  # warm the page cache, holding nothing
                with open(f, "rb") as fh:
                    while fh.read(8 << 20):
                        pass
            bf16 = args.workdir / f"{preset}-llama-bf16.gguf"
            bf16.unlink(missing_ok=True)
            step1 = gb.timed([sys.executable, "-c", gb.RUNNER, str(vendor), str(src), str(bf16), "bf16"], {**os.environ, "NO_LOCAL_GGUF": "1"})
            step1["disk_bytes"] = bf16.stat().st_size
            inputs[preset] = {"src": src, "imatrix": imx, "bf16": bf16, "step1": step1,
                              "input_bytes": sum(f.stat().st_size for f in src.iterdir())}
        return inputs[preset]

    def ours(quant: str, out: Path, *extra: str) -> tuple[dict, Path]:
        inp = prepared(args.iq_preset if quant in NEEDS_IMATRIX else args.preset)
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "dshub.cli", "convert", str(inp["src"]), "--to", "gguf", "--quant", quant, "--out", str(out),
               "--workers", str(args.workers), "--device", "cpu", *extra]
        if quant in NEEDS_IMATRIX:
            cmd += ["--imatrix", str(inp["imatrix"])]
        r = gb.timed(cmd, env)
        r["disk_bytes"] = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
        return r, next(out.glob("*.gguf"))

    rows = {}
    for quant in args.quants.split(","):
        preset = args.iq_preset if quant in NEEDS_IMATRIX else args.preset
        inp = prepared(preset)
        step1 = inp["step1"]
        ref = args.workdir / f"llama-{quant.lower()}.gguf"
        ref.unlink(missing_ok=True)
        step2 = gb.timed([sys.executable, "-c", QUANTIZE, str(inp["bf16"]), str(ref), str(FILE_TYPES[quant]), str(args.workers),
                          str(inp["imatrix"]) if quant in NEEDS_IMATRIX else "-"])
        two = {"wall_s": round(step1["wall_s"] + step2["wall_s"], 2), "cpu_s": round(step1["cpu_s"] + step2["cpu_s"], 2),
               "peak_rss_mb": max(step1["peak_rss_mb"], step2["peak_rss_mb"]), "disk_bytes": step1["disk_bytes"] + ref.stat().st_size}
        mine, out_file = ours(quant, args.workdir / f"dshub-{quant}")
        check = json.loads(subprocess.run([sys.executable, "-c", HELPER, "compare", str(out_file), str(ref)], env=env,
                                          check=True, capture_output=True, text=True).stdout)
        ggml_row = None
        if quant not in NEEDS_IMATRIX and not args.no_ggml_rows:  # the imatrix types are ggml's in both rows
            ggml_row, ggml_file = ours(quant, args.workdir / f"dshub-{quant}-ggml", "--codec-backend", "ggml")
            ggml_row["same_bytes_as_auto"] = filecmp.cmp(ggml_file, out_file, shallow=False)  # streamed: the parent stays small
            ggml_row["time_ratio"] = round(ggml_row["wall_s"] / two["wall_s"], 3)
            ggml_row["cpu_ratio"] = round(ggml_row["cpu_s"] / two["cpu_s"], 3)
            ggml_row["rss_ratio"] = round(ggml_row["peak_rss_mb"] / two["peak_rss_mb"], 3)
        rows[quant] = {"preset": preset, "dshub_ggml": ggml_row, "input_bytes": inp["input_bytes"], "convert_bf16": step1, "quantize": step2,
                       "two_steps": two, "dshub": mine, "output_check": check, "output_bytes": out_file.stat().st_size,
                       "time_ratio": round(mine["wall_s"] / two["wall_s"], 3), "cpu_ratio": round(mine["cpu_s"] / two["cpu_s"], 3),
                       "rss_ratio": round(mine["peak_rss_mb"] / two["peak_rss_mb"], 3), "disk_ratio": round(mine["disk_bytes"] / two["disk_bytes"], 3)}
    torch_row = None
    if "Q4_K_M" in rows and not args.no_torch:
        warmup = gb.timed([sys.executable, "-c", WARMUP], env)
        torch_row, torch_file = ours("Q4_K_M", args.workdir / "dshub-Q4_K_M-torch", "--codec-backend", "torch")
        torch_row["warmup_compile_s"] = warmup["wall_s"]
        torch_row["same_bytes_as_auto"] = filecmp.cmp(torch_file, next((args.workdir / "dshub-Q4_K_M").glob("*.gguf")), shallow=False)
        two = rows["Q4_K_M"]["two_steps"]
        torch_row["time_ratio"] = round(torch_row["wall_s"] / two["wall_s"], 3)
        torch_row["rss_ratio"] = round(torch_row["peak_rss_mb"] / two["peak_rss_mb"], 3)
    doc = {
        "preset": args.preset, "iq_preset": args.iq_preset, "workers": args.workers, "quants": rows, "dshub_torch_q4_k_m": torch_row, "targets": TARGETS,
        "per_core": throughput(), "llama_cpp_python": vendor.parts[-3],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
    }
    print(json.dumps(doc, indent=2))
    if args.results:
        append_results(REPO / "bench" / "RESULTS.md", doc)


def append_results(path: Path, d: dict) -> None:
    ok = lambda r, t: "met" if r <= t else "NOT met"  # noqa: E731
    lines = []
    for q, r in d["quants"].items():
        two, m, st, s1 = r["two_steps"], r["dshub"], r["quantize"], r["convert_bf16"]
        lines.append(f"| {q} | llama.cpp `convert_hf_to_gguf.py --outtype bf16` ({r['preset']}, {r['input_bytes'] / 1e6:.0f} MB FP8) | {s1['wall_s']} | {s1['cpu_s']} | {s1['peak_rss_mb']} | |")
        lines.append(f"| {q} | llama.cpp `llama_model_quantize` BF16 -> {q} | {st['wall_s']} | {st['cpu_s']} | {st['peak_rss_mb']} | |")
        lines.append(f"| {q} | **llama.cpp, both steps** | {two['wall_s']} | {two['cpu_s']} | {two['peak_rss_mb']} | {two['disk_bytes'] / 1e6:.0f} MB |")
        lines.append(f"| {q} | **`dshub convert --quant {q}`** (default `auto`: native kernels, ggml for the rest) | {m['wall_s']} | {m['cpu_s']} | {m['peak_rss_mb']} | {m['disk_bytes'] / 1e6:.0f} MB |")
        if (g := r["dshub_ggml"]):
            lines.append(f"| {q} | `dshub convert --quant {q} --codec-backend ggml` | {g['wall_s']} | {g['cpu_s']} | {g['peak_rss_mb']} | {g['disk_bytes'] / 1e6:.0f} MB |")
    t = d["dshub_torch_q4_k_m"]
    if t:
        lines.append(f"| Q4_K_M | `dshub convert --quant Q4_K_M --codec-backend torch` (fused kernels) | {t['wall_s']} | {t['cpu_s']} | {t['peak_rss_mb']} | {t['disk_bytes'] / 1e6:.0f} MB |")
    ratios = []
    for q, r in d["quants"].items():
        c = r["output_check"]
        ratios.append(f"- {q}: wall time ratio **{r['time_ratio']}** (target <= {TARGETS['time']}: {ok(r['time_ratio'], TARGETS['time'])}), "
                      f"CPU time ratio {r['cpu_ratio']}, peak RSS ratio **{r['rss_ratio']}** (target <= {TARGETS['rss']}: "
                      f"{ok(r['rss_ratio'], TARGETS['rss'])}), bytes written {r['disk_ratio']}x; {c['same_types']} of {c['tensors']} "
                      f"tensors have llama.cpp's type, {c['byte_identical']} are byte-identical.")
        if (g := r["dshub_ggml"]):
            ratios.append(f"  With `--codec-backend ggml`: wall {g['time_ratio']}, CPU {g['cpu_ratio']}, peak RSS {g['rss_ratio']}; "
                          f"same file as the default backend's: {g['same_bytes_as_auto']}.")
    if t:
        ratios.append(f"- Torch reference, Q4_K_M: wall time ratio {t['time_ratio']}, peak RSS ratio {t['rss_ratio']} (kernels compiled "
                      f"once before, {t['warmup_compile_s']} s); same file as the default backend's: {t['same_bytes_as_auto']}.")
    pc = d["per_core"]
    per_core = "; ".join(f"{k} {v.get('torch_melem_s')} / {v.get('ggml_melem_s')} / {v.get('native_melem_s')}" for k, v in pc.items() if k != "IQ2_XXS")
    text = f"""
## GGUF K-quants and IQ types, native kernels and ggml: dshub one pass vs llama.cpp two steps (`python bench/kquants.py --preset {d['preset']} --iq-preset {d['iq_preset']} --workers {d['workers']}`)

Same run, warm inputs (block-FP8 synthetic presets: `{d['preset']}` for the K-quants, `{d['iq_preset']}` for IQ2_XXS), {d['machine']};
llama.cpp from {d['llama_cpp_python']} (portable build). Each step is a child process (wall time, CPU time, peak RSS).
llama.cpp's first step (`convert_hf_to_gguf.py --outtype bf16`) ran once per preset and counts in each "both steps" row.
IQ2_XXS: both paths use the same synthetic imatrix.

| quant | path | wall s | CPU s | peak RSS MB | bytes written |
|---|---|---|---|---|---|
{chr(10).join(lines)}

{chr(10).join(ratios)}
- One core, 64 x 7168 float32 rows, same bytes, M elements/s (torch / ggml / native): {per_core};
  IQ2_XXS (ggml only) {pc['IQ2_XXS']['ggml_melem_s']}.
- Byte identity: the two paths quantize different inputs (llama.cpp rounds the FP8-dequantized weights to BF16 first;
  dshub quantizes the exact float32 values). Given the same float32 input every tensor is byte-identical
  (tests/converters/gguf/test_mixtures_llama.py, test_iq_mixtures_llama.py).
"""
    with open(path, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
