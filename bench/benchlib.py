"""What the benchmark scripts share: running a contender as a child process (wall time, CPU time, peak RSS), the
common command line, and the synthetic input they convert. Scripts import it by name (bench/ is their sys.path[0])."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a child; its wall time, CPU time and peak resident set size (the child's own ru_maxrss)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:6]} failed:\n{err.decode(errors='replace')[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def bench_parser(description: str, preset: str, workdir: str) -> argparse.ArgumentParser:
    """--preset, --workers, --workdir and --results, with this benchmark's defaults."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--preset", default=preset)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=Path(workdir))
    ap.add_argument("--results", action="store_true", help="append a section to bench/RESULTS.md")
    return ap


def synthetic_input(args: argparse.Namespace) -> tuple[Path, dict[str, str]]:
    """The preset's synthetic checkpoint under --workdir (written once), and the environment the children run in."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    src = args.workdir / args.preset
    if not (src / "config.json").exists():
        subprocess.run([sys.executable, "-m", "dshub.cli", "synth", str(src), "--preset", args.preset], env=env, check=True)
    return src, env


def verdict(ratio: float, target: float) -> str:
    """How a ratio (lower is better) stands against its target."""
    return "met" if ratio <= target else "NOT met"


def ratio_lines(d: dict, targets: dict[str, float]) -> str:
    """The RESULTS.md lines every "dshub vs llama.cpp's converter" section ends with: time and peak-RSS ratios against
    their targets, and the tensors byte-identical with llama.cpp's output."""
    c = d["output_check"]
    return (f"- Time ratio {d['time_ratio']} (target <= {targets['time']}: {verdict(d['time_ratio'], targets['time'])}); "
            f"peak RSS ratio {d['rss_ratio']}\n  (target <= {targets['rss']}: {verdict(d['rss_ratio'], targets['rss'])}).\n"
            f"- Output: {c['byte_identical']} of {c['tensors']} tensors byte-identical with llama.cpp's\n"
            f"  ({c['reference_tensors']} tensors there).")
