"""FP8 -> GGUF benchmark: dshub vs llama.cpp's convert_hf_to_gguf.py on the same input, in one run.

Both contenders run in their own subprocess; the parent takes each child's wall time and peak RSS (ru_maxrss from
wait4). The inputs are read once first, so both see the same warm page cache. The two outputs are then compared
tensor by tensor (names, types, shapes, bytes).

llama.cpp's converter comes from the llama-cpp-python sdist (vendor/llama.cpp: convert_hf_to_gguf.py, conversion/,
gguf-py/), unpacked by .ci/llama-cpp.sh under $DSHUB_LLAMA_CACHE/src, or downloaded here with pip. It is used as is,
except that its tokenizer lookup (a hash of the encoding of a fixed text, known only for published tokenizers)
answers "deepseek-v3" for our synthetic tokenizer.

    python bench/gguf.py [--preset bench] [--quant Q8_0] [--workers 2] [--workdir /tmp/dshub-bench-gguf] [--results]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from benchlib import ratio_lines, timed  # noqa: E402  (before bench/ leaves sys.path)

# This file is named gguf.py: keep `import gguf` pointing at the gguf package, not at this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36")
RUNNER = """
import runpy, sys
vendor, src, out, outtype = sys.argv[1:5]
sys.path[:0] = [vendor, vendor + "/gguf-py"]
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "deepseek-v3"
sys.argv = ["convert_hf_to_gguf.py", src, "--outtype", outtype, "--outfile", out]
runpy.run_path(vendor + "/convert_hf_to_gguf.py", run_name="__main__")
"""
TARGETS = {"time": 0.5, "rss": 0.25}


def llama_cpp_vendor(workdir: Path) -> Path:
    """vendor/llama.cpp of the llama-cpp-python sdist: from .ci/llama-cpp.sh's cache, else downloaded (no build)."""
    cache = Path(os.environ.get("DSHUB_LLAMA_CACHE", Path.home() / ".cache" / "dshub" / "llama-cpp"))
    for root in (cache / "src", workdir / "src"):
        found = sorted(root.glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
        if found:
            return found[-1].parent
    dl = workdir / "sdist"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(dl)], check=True)
    with tarfile.open(next(dl.glob("llama_cpp_python-*.tar.gz"))) as tf:
        tf.extractall(workdir / "src", filter="data")
    return next((workdir / "src").glob("llama_cpp_python-*/vendor/llama.cpp"))


def compare(ours: Path, ref: Path) -> dict[str, int]:
    import gguf
    import numpy as np

    a, b = {t.name: t for t in gguf.GGUFReader(ours).tensors}, {t.name: t for t in gguf.GGUFReader(ref).tensors}
    same = sum(1 for n in a.keys() & b.keys() if a[n].tensor_type == b[n].tensor_type
               and np.array_equal(np.asarray(a[n].data).view(np.uint8), np.asarray(b[n].data).view(np.uint8)))
    return {"tensors": len(a), "reference_tensors": len(b), "byte_identical": same}


def run_pair(src: Path, quant: str, outtype: str, workers: int, workdir: Path, vendor: Path, env: dict[str, str]) -> dict:
    """dshub `--quant quant` and llama.cpp's converter `--outtype outtype` on the same warm input: both children's
    wall time, CPU time and peak RSS, their ratios, and the outputs compared tensor by tensor."""
    for f in src.iterdir():  # warm the page cache for both contenders, holding nothing
        with open(f, "rb") as fh:
            while fh.read(8 << 20):
                pass
    ours_dir, ref_path = workdir / "dshub-out", workdir / "llama-cpp-out.gguf"
    shutil.rmtree(ours_dir, ignore_errors=True)
    ref_path.unlink(missing_ok=True)
    ours = timed([sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "gguf", "--quant", quant, "--out",
                  str(ours_dir), "--workers", str(workers), "--device", "cpu"], env)
    ref = timed([sys.executable, "-c", RUNNER, str(vendor), str(src), str(ref_path), outtype],
                {**os.environ, "NO_LOCAL_GGUF": "1"})
    out_file = next(ours_dir.glob("*.gguf"))
    return {
        "quant": quant, "workers": workers, "input_bytes": sum(f.stat().st_size for f in src.iterdir()),
        "output_bytes": out_file.stat().st_size, "dshub": ours, "llama_cpp_convert_hf_to_gguf": ref,
        "time_ratio": round(ours["wall_s"] / ref["wall_s"], 3), "rss_ratio": round(ours["peak_rss_mb"] / ref["peak_rss_mb"], 3),
        "targets": TARGETS, "output_check": compare(out_file, ref_path), "llama_cpp_python": vendor.parts[-3],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--quant", default="Q8_0", choices=["Q8_0", "F16", "BF16"])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/dshub-bench-gguf"))
    ap.add_argument("--results", action="store_true", help="append a section to bench/RESULTS.md")
    args = ap.parse_args()
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    src = args.workdir / f"{args.preset}-fp8"
    if not (src / "config.json").exists():  # in a child: this process stays small, so children do not inherit its RSS
        subprocess.run([sys.executable, "-m", "dshub.cli", "synth", str(src), "--preset", args.preset], env=env, check=True)
    vendor = llama_cpp_vendor(args.workdir)
    doc = {"preset": args.preset, **run_pair(src, args.quant, args.quant.lower(), args.workers, args.workdir, vendor, env)}
    print(json.dumps(doc, indent=2))
    if args.results:
        append_results(repo / "bench" / "RESULTS.md", doc)


def append_results(path: Path, d: dict) -> None:
    text = f"""
## GGUF: FP8 -> {d['quant']}, dshub vs llama.cpp convert_hf_to_gguf.py (`python bench/gguf.py --preset {d['preset']} --workers {d['workers']}`)

Same run, same warm input ({d['input_bytes'] / 1e6:.0f} MB block-FP8 `{d['preset']}` preset), {d['machine']}; llama.cpp from
{d['llama_cpp_python']}. Wall time and peak RSS of each child process (both include ~0.24 GB of Python + torch).

| contender | wall s | CPU s | peak RSS MB |
|---|---|---|---|
| llama.cpp `convert_hf_to_gguf.py --outtype {d['quant'].lower()}` | {d['llama_cpp_convert_hf_to_gguf']['wall_s']} | {d['llama_cpp_convert_hf_to_gguf']['cpu_s']} | {d['llama_cpp_convert_hf_to_gguf']['peak_rss_mb']} |
| `dshub convert --to gguf --quant {d['quant']}` | {d['dshub']['wall_s']} | {d['dshub']['cpu_s']} | {d['dshub']['peak_rss_mb']} |

{ratio_lines(d, TARGETS)}
"""
    with open(path, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
