"""FP8 -> INT4 (`experts` scope, group 128, compressed-tensors) vs FP8 -> BF16 on the same input, in one run.

Each conversion runs in its own subprocess, which reports its wall time and peak RSS (VmHWM: the high-water mark of
its own address space; ru_maxrss would carry the parent's RSS at fork across exec) above the RSS it had after
imports. The input is read once before timing, so both see the same warm page cache. The two conversions alternate
`--repeat` times and the fastest of each counts: on a shared machine, load drifts between runs.
Targets: INT4 wall time <= 1.5x BF16's; INT4 peak RSS above imports <= 2x the largest tensor.

    python bench/int4.py [--preset bench] [--workdir /tmp/dshub-bench-int4] [--format compressed-tensors] [--repeat 2]
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


def status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak of this process image), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.glob("*.safetensors"))


def warm(src: Path) -> None:
    """Read every shard once (8 MiB at a time) so both runs start from the same page cache."""
    buf = bytearray(8 << 20)
    for shard in sorted(src.glob("*.safetensors")):
        with open(shard, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def child(target: str, src: Path, out: Path, params: dict) -> None:
    import torch  # noqa: F401  (import cost excluded from the RSS delta)
    from dshub.converters import build_options, run_conversion

    base = status_mb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    run_conversion(src, build_options(target, out=out, device="cpu", workers=1, **params), progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"name": target, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": status_mb("VmHWM"), "base_rss_mb": base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dshub-bench-int4"))
    ap.add_argument("--format", default="compressed-tensors")
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=2, help="alternate the two conversions this many times; fastest counts")
    ap.add_argument(CHILD, nargs=4, metavar=("TARGET", "SRC", "OUT", "PARAMS"))
    args = ap.parse_args()
    if args.child:
        target, src, out, params = args.child
        child(target, Path(src), Path(out), json.loads(params))
        return

    from dshub.checkpoint.reader import Checkpoint
    from dshub.checkpoint.synth import write_synthetic

    src = args.workdir / f"src-{args.preset}"
    if not (src / "model.safetensors.index.json").exists():
        write_synthetic(src, args.preset, seed=0)
    ckpt = Checkpoint.open(src)
    largest_mb = max(e.numel for h in ckpt.headers() for e in h.tensors.values()) * 2 / 2**20  # as BF16
    warm(src)
    runs = {"bf16": {}, "int4": {"format": args.format, "group_size": args.group_size, "scope": "experts"}}
    results: dict[str, dict] = {}
    for _ in range(max(1, args.repeat)):
        for target, params in runs.items():
            out = args.workdir / f"out-{target}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, __file__, CHILD, target, str(src), str(out), json.dumps(params)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["out_bytes"] = dir_bytes(out)
            res["all_wall_s"] = results.get(target, {}).get("all_wall_s", []) + [res["wall_s"]]
            res["wall_s"] = min(res["all_wall_s"])
            res["all_cpu_s"] = results.get(target, {}).get("all_cpu_s", []) + [res["cpu_s"]]
            res["cpu_s"] = min(res["all_cpu_s"])
            results[target] = res
            shutil.rmtree(out, ignore_errors=True)
    i4, b = results["int4"], results["bf16"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_average_1m": os.getloadavg()[0], "repeat": args.repeat,
        "preset": args.preset, "input_mb": dir_bytes(src) / 2**20, "format": args.format, "group_size": args.group_size,
        "largest_tensor_bf16_mb": largest_mb, "results": results,
        "ratios": {
            "int4_vs_bf16_wall": i4["wall_s"] / b["wall_s"],
            "int4_vs_bf16_cpu": i4["cpu_s"] / b["cpu_s"],
            "int4_vs_bf16_output_bytes": i4["out_bytes"] / b["out_bytes"],
            "int4_rss_above_imports_vs_largest_tensor": (i4["peak_rss_mb"] - i4["base_rss_mb"]) / largest_mb,
        },
        "targets": {"int4_vs_bf16_wall": "<= 1.5", "int4_rss_above_imports_vs_largest_tensor": "<= 2"},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
