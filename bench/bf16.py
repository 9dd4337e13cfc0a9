"""FP8 -> BF16 benchmark: dshub vs a CPU port of the reference script vs the I/O floor, in one run.

Each contender runs in its own subprocess, which reports its wall time and peak RSS (ru_maxrss) above the RSS it had
after imports. Inputs are read once before timing, so all three see the same warm page cache.

    python bench/bf16.py [--preset bench] [--workdir /tmp/dshub-bench] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHILD = "--child"


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    """Peak RSS of this process since exec (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    return _status_mb("VmHWM")


def current_rss_mb() -> float:
    return _status_mb("VmRSS")


# ------------------------------------------------------------------ contenders (run in the child)
def run_dshub(src: Path, out: Path, workers: int) -> None:
    from dshub.converters import build_options, run_conversion

    run_conversion(src, build_options("bf16", out=out, device="cpu", workers=workers), progress=False)


def run_reference_port(src: Path, out: Path, workers: int) -> None:
    """The reference algorithm (DeepSeek's fp8_cast_bf16.py), on the CPU: load each whole shard, dequantize every FP8
    weight with its scale (looked up across shards, keeping the last two shards loaded), save the shard, fix the index."""
    import torch
    from safetensors.torch import load_file, save_file

    index = json.loads((src / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    loaded: dict[str, dict[str, torch.Tensor]] = {}

    def tensor(name: str) -> torch.Tensor:
        shard = weight_map[name]
        if shard not in loaded:
            loaded[shard] = load_file(str(src / shard))
            while len(loaded) > 2:
                loaded.pop(next(iter(loaded)))
        return loaded[shard][name]

    def block_dequant(w: torch.Tensor, s: torch.Tensor, block: int = 128) -> torch.Tensor:
        rows, cols = w.shape
        full = s.repeat_interleave(block, 0).repeat_interleave(block, 1)[:rows, :cols]
        return (w.to(torch.float32) * full).to(torch.bfloat16)

    out.mkdir(parents=True, exist_ok=True)
    dropped = []
    for shard in sorted(set(weight_map.values())):
        state = load_file(str(src / shard))
        loaded[shard] = state
        new = {}
        for name, w in state.items():
            if name.endswith("_scale_inv"):
                continue
            if w.element_size() == 1:
                scale_name = name + "_scale_inv"
                new[name] = block_dequant(w, tensor(scale_name))
                dropped.append(scale_name)
            else:
                new[name] = w
        save_file(new, str(out / shard))
        del new
    for name in dropped:
        weight_map.pop(name, None)
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))


def run_io_floor(src: Path, out: Path, workers: int) -> None:
    """Read every input byte and write as many bytes as dshub's output (fsync'd), in 8 MiB chunks."""
    out.mkdir(parents=True, exist_ok=True)
    out_bytes = int(os.environ["DSHUB_BENCH_OUT_BYTES"])
    shards = sorted(src.glob("*.safetensors"))
    per = out_bytes // len(shards)
    buf = bytearray(8 << 20)
    for i, shard in enumerate(shards):
        with open(shard, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
        with open(out / shard.name, "wb") as f:
            left = per
            while left > 0:
                n = min(left, len(buf))
                f.write(memoryview(buf)[:n])
                left -= n
            f.flush()
            os.fsync(f.fileno())


CONTENDERS = {"dshub": run_dshub, "reference-port": run_reference_port, "io-floor": run_io_floor}


def child(name: str, src: Path, out: Path, workers: int) -> None:
    import torch  # noqa: F401  (import cost excluded from the RSS delta)
    import safetensors.torch  # noqa: F401
    import dshub.converters  # noqa: F401

    base = current_rss_mb()
    t0 = time.perf_counter()
    CONTENDERS[name](src, out, workers)
    wall = time.perf_counter() - t0
    print(json.dumps({"name": name, "wall_s": wall, "peak_rss_mb": rss_mb(), "base_rss_mb": base}))


# ------------------------------------------------------------------ driver
def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.glob("*.safetensors"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dshub-bench"))
    ap.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument(CHILD, nargs=3, metavar=("NAME", "SRC", "OUT"))
    args = ap.parse_args()
    if args.child:
        name, src, out = args.child
        child(name, Path(src), Path(out), args.workers)
        return

    from dshub.checkpoint.reader import Checkpoint
    from dshub.checkpoint.synth import write_synthetic

    src = args.workdir / f"src-{args.preset}"
    if not (src / "model.safetensors.index.json").exists():
        write_synthetic(src, args.preset, seed=0)
    ckpt = Checkpoint.open(src)
    largest_fp8 = max(e.numel for h in ckpt.headers() for e in h.tensors.values() if e.dtype == "F8_E4M3")
    largest_out_mb = largest_fp8 * 2 / 2**20
    for shard in src.glob("*.safetensors"):  # warm the page cache for everyone (chunked: keeps this process small)
        with open(shard, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass
    in_bytes = dir_bytes(src)
    results = {}
    out_bytes = 0
    for name in ("dshub", "reference-port", "io-floor", "dshub-1-worker"):
        out = args.workdir / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ, DSHUB_BENCH_OUT_BYTES=str(out_bytes))
        workers = 1 if name.endswith("-1-worker") else args.workers
        cmd = [sys.executable, __file__, "--workers", str(workers), CHILD, name.removesuffix("-1-worker"), str(src), str(out)]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
        res["out_bytes"] = dir_bytes(out)
        out_bytes = out_bytes or res["out_bytes"]
        res["throughput_mb_s"] = (in_bytes + res["out_bytes"]) / 2**20 / res["wall_s"]
        results[name] = res
        shutil.rmtree(out, ignore_errors=True)
    d, ref, floor, d1 = results["dshub"], results["reference-port"], results["io-floor"], results["dshub-1-worker"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "preset": args.preset, "input_mb": in_bytes / 2**20, "output_mb": d["out_bytes"] / 2**20, "workers": args.workers,
        "largest_output_tensor_mb": largest_out_mb,
        "results": results,
        "ratios": {
            "dshub_vs_reference_speed": ref["wall_s"] / d["wall_s"],
            "dshub_vs_io_floor_speed": floor["wall_s"] / d["wall_s"],
            "dshub_rss_above_imports_vs_largest_tensor": (d["peak_rss_mb"] - d["base_rss_mb"]) / largest_out_mb,
            "dshub_1_worker_rss_above_imports_vs_largest_tensor": (d1["peak_rss_mb"] - d1["base_rss_mb"]) / largest_out_mb,
            "dshub_1_worker_vs_reference_speed": ref["wall_s"] / d1["wall_s"],
            "reference_rss_above_imports_vs_largest_tensor": (ref["peak_rss_mb"] - ref["base_rss_mb"]) / largest_out_mb,
        },
        "targets": {"dshub_vs_reference_speed": ">= 3", "dshub_vs_io_floor_speed": ">= 0.7",
                    "dshub_rss_above_imports_vs_largest_tensor": "<= 2"},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
