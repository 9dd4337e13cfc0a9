"""ONNX int4 benchmark: dshub `convert --to onnx --precision int4` vs onnxruntime-genai's own model builder, in one run.

Same BF16 input (the synthetic `bench-qwen2` distill, a few hundred MB), same warm page cache, each contender in its
own subprocess; the parent takes each child's wall time and peak RSS (ru_maxrss). The builder is the PyPI package's
`python -m onnxruntime_genai.models.builder -p int4 -e cpu` (it needs `pip install onnx-ir`). Both outputs are then
run by onnxruntime on the same prompt and their logits compared with transformers' (relative max error), so the
sizes and times are of models that work.

    python bench/onnx_int4.py [--preset bench-qwen2] [--workers 2] [--workdir /tmp/dshub-bench-onnx] [--results]
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from benchlib import REPO, bench_parser, synthetic_input, timed  # noqa: E402  (bench/ is sys.path[0])

TARGETS = {"time": 0.5, "rss": 0.25}
IDS = [0] + list(range(40, 90))


def logits_error(src: Path, out: Path) -> float:
    """max |onnxruntime - transformers| / max |transformers| over a 51-token prompt."""
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers

    cfg = json.loads((src / "config.json").read_text())
    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model(torch.tensor([IDS])).logits[0].numpy()
    s = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    feed = {"input_ids": np.array([IDS], np.int64), "attention_mask": np.ones((1, len(IDS)), np.int64)}
    for i in range(cfg["num_hidden_layers"]):
        for kv in ("key", "value"):
            feed[f"past_key_values.{i}.{kv}"] = np.zeros((1, cfg["num_key_value_heads"], 0, hd), np.float32)
    got = s.run(["logits"], feed)[0][0]
    return round(float(np.abs(got - ref).max() / np.abs(ref).max()), 4)


# In a child: convert in-process and report the peak RSS above the RSS after imports, and the plan's largest tensor
# in its fp32 form (what a streaming converter must hold at least once).
RSS_CHILD = r"""
import json, sys
from pathlib import Path
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
import torch
from dshub.converters import build_options, make_plan, run_conversion
opts = build_options("onnx", out=Path(sys.argv[2]), precision="int4", workers=int(sys.argv[3]), device="cpu")
_, _, plan = make_plan(sys.argv[1], opts)
largest = max(4 * max(1, __import__("math").prod(t.shape)) for f in plan.files if isinstance(f.data, list) for t in f.data)
base = status("VmRSS")
run_conversion(sys.argv[1], opts, progress=False)
print(json.dumps({"above_imports_mb": round((status("VmHWM") - base) / 1e6, 1), "largest_tensor_fp32_mb": round(largest / 1e6, 1)}))
"""


def streaming_rss(src: Path, out: Path, workers: int, env: dict[str, str]) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([sys.executable, "-c", RSS_CHILD, str(src), str(out), str(workers)], env=env, capture_output=True,
                       text=True, check=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {**d, "ratio": round(d["above_imports_mb"] / d["largest_tensor_fp32_mb"], 2)}


def dir_bytes(d: Path) -> int:
    return sum(f.stat().st_size for f in d.iterdir() if f.is_file())


def main() -> None:
    args = bench_parser(__doc__.split("\n")[0], "bench-qwen2", "/tmp/dshub-bench-onnx").parse_args()
    repo = REPO
    src, env = synthetic_input(args)
    for f in src.iterdir():  # warm the page cache for both contenders, holding nothing
        with open(f, "rb") as fh:
            while fh.read(8 << 20):
                pass
    ours_dir, ref_dir = args.workdir / "dshub-out", args.workdir / "builder-out"
    for d in (ours_dir, ref_dir, args.workdir / "builder-cache"):
        shutil.rmtree(d, ignore_errors=True)
    ours = timed([sys.executable, "-m", "dshub.cli", "convert", str(src), "--to", "onnx", "--precision", "int4", "--out",
                  str(ours_dir), "--workers", str(args.workers), "--device", "cpu"], env)
    ref = timed([sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", str(src), "-i", str(src), "-o", str(ref_dir),
                 "-p", "int4", "-e", "cpu", "-c", str(args.workdir / "builder-cache")], env)
    doc = {
        "preset": args.preset, "workers": args.workers, "input_bytes": dir_bytes(src),
        "dshub": {**ours, "output_bytes": dir_bytes(ours_dir), "logits_rel_error": logits_error(src, ours_dir)},
        "builder": {**ref, "output_bytes": dir_bytes(ref_dir), "logits_rel_error": logits_error(src, ref_dir)},
        "time_ratio": round(ours["wall_s"] / ref["wall_s"], 3), "rss_ratio": round(ours["peak_rss_mb"] / ref["peak_rss_mb"], 3),
        "streaming_rss": streaming_rss(src, args.workdir / "dshub-rss", 1, env),  # one worker: the per-worker bound
        "targets": TARGETS, "onnxruntime_genai": _version("onnxruntime_genai"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
    }
    print(json.dumps(doc, indent=2))
    if args.results:
        append_results(repo / "bench" / "RESULTS.md", doc)


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module.replace("_", "-"))


def append_results(path: Path, d: dict) -> None:
    ok = lambda r, t: "met" if r <= t else "NOT met"  # noqa: E731
    o, b = d["dshub"], d["builder"]
    text = f"""
## ONNX int4: dshub vs onnxruntime-genai's model builder (`python bench/onnx_int4.py --preset {d['preset']} --workers {d['workers']}`)

Same run, same warm input ({d['input_bytes'] / 1e6:.0f} MB BF16 `{d['preset']}` preset), {d['machine']};
onnxruntime-genai {d['onnxruntime_genai']} (`-p int4 -e cpu`). Wall time and peak RSS of each child process (both
include Python + torch). Logit error: onnxruntime on the output vs transformers on the BF16 input, max abs / max
|logit| over a 51-token prompt (random synthetic weights: INT4 noise moves them a lot; the builder also quantizes
lm_head, dshub keeps it fp32).

| contender | wall s | CPU s | peak RSS MB | output MB | logit error |
|---|---|---|---|---|---|
| `python -m onnxruntime_genai.models.builder -p int4` | {b['wall_s']} | {b['cpu_s']} | {b['peak_rss_mb']} | {b['output_bytes'] / 1e6:.1f} | {b['logits_rel_error']} |
| `dshub convert --to onnx --precision int4` | {o['wall_s']} | {o['cpu_s']} | {o['peak_rss_mb']} | {o['output_bytes'] / 1e6:.1f} | {o['logits_rel_error']} |

- Time ratio {d['time_ratio']} (target <= {TARGETS['time']}: {ok(d['time_ratio'], TARGETS['time'])}); peak RSS ratio {d['rss_ratio']}
  (target <= {TARGETS['rss']}: {ok(d['rss_ratio'], TARGETS['rss'])}).
- Streaming: dshub's peak RSS above its RSS after imports is {d['streaming_rss']['above_imports_mb']} MB,
  {d['streaming_rss']['ratio']}x the largest tensor in fp32 ({d['streaming_rss']['largest_tensor_fp32_mb']} MB), one
  worker (goal: below ~2x).
"""
    with open(path, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
