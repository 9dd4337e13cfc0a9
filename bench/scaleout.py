"""The same conversion with the local executor and with `--executor ray` on a local cluster of 1 and 2 nodes (one CPU
each, `ray start` on this host), in one run: wall time of each and the ratios (Ray's scheduling overhead against the
local executor, scaling from 1 to 2 nodes). Every run is a fresh `dshub convert` subprocess into an empty --out,
and every output is compared byte for byte with the local one.

    python bench/scaleout.py [--preset tiny] [--to int4] [--workdir /tmp/dshub-bench-scaleout] [--repeat 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.ray_cluster import ray_env, start_cluster  # noqa: E402  (the tests' cluster starter)


def convert(src: Path, out: Path, to: str, *extra: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", to, "--out", str(out), "--json", *extra]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=ray_env(), capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return wall


def same(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.safetensors"))
    return names == sorted(p.name for p in b.glob("*.safetensors")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--to", default="int4", choices=["bf16", "int4"])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dshub-bench-scaleout"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    from dshub.checkpoint.synth import write_synthetic

    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / args.preset
    if not (src / "config.json").exists():
        write_synthetic(src, args.preset, seed=0)
    files = len(list(src.glob("*.safetensors")))
    best: dict[str, float] = {}

    def take(name: str, wall: float) -> None:
        best[name] = min(best.get(name, wall), wall)

    for _ in range(args.repeat):
        take("local, 1 worker", convert(src, args.workdir / "local1", args.to, "--workers", "1"))
        take("local, 2 workers", convert(src, args.workdir / "local2", args.to, "--workers", "2"))
    identical = True
    for nodes in (1, 2):
        cluster = start_cluster(nodes)
        try:
            for _ in range(args.repeat):
                out = args.workdir / f"ray{nodes}"
                take(f"ray, {nodes} node(s)", convert(src, out, args.to, "--executor", "ray", "--ray-address", cluster.address))
                identical &= same(out, args.workdir / "local1")
        finally:
            cluster.stop()
    l1, l2, r1, r2 = (best[k] for k in ("local, 1 worker", "local, 2 workers", "ray, 1 node(s)", "ray, 2 node(s)"))
    print(json.dumps({
        "preset": args.preset, "target": args.to, "files": files, "best_wall_s": best,
        "ratios": {"ray_1_node_over_local_1_worker": r1 / l1, "ray_2_nodes_over_ray_1_node": r2 / r1,
                   "ray_2_nodes_over_local_2_workers": r2 / l2, "local_2_over_local_1": l2 / l1},
        "ray_overhead_s_per_run": r1 - l1, "ray_overhead_s_per_file": (r1 - l1) / files,
        "byte_identical": identical,
    }, indent=2))


if __name__ == "__main__":
    main()
