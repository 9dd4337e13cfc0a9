"""DeepSeek-V4 -> GGUF benchmark: dshub (`--quant MXFP4_MOE`) vs llama.cpp's convert_hf_to_gguf.py on the same
synthetic V4 checkpoint (MXFP4 experts, e8m0-scaled FP8 elsewhere), in one run: wall time and peak RSS as ratios, and
the outputs compared tensor by tensor. The child-process timing, the converter runner and the comparison are
bench/gguf.py's.

    python bench/v4.py [--preset bench-v4] [--workers 2] [--workdir /tmp/dshub-bench-v4] [--results]
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_gguf", Path(__file__).with_name("gguf.py"))
bench_gguf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_gguf)  # type: ignore[union-attr]
TARGETS = bench_gguf.TARGETS
from benchlib import REPO, bench_parser, ratio_lines, synthetic_input  # noqa: E402  (bench/ is sys.path[0])


def main() -> None:
    args = bench_parser(__doc__.split("\n")[0], "bench-v4", "/tmp/dshub-bench-v4").parse_args()
    repo = REPO
    src, env = synthetic_input(args)
    vendor = bench_gguf.llama_cpp_vendor(args.workdir)
    # its DeepSeek-V4 types do not depend on --outtype (MXFP4 experts, FP8 -> Q8_0, BF16 and F32 kept)
    doc = {"preset": args.preset, **bench_gguf.run_pair(src, "MXFP4_MOE", "q8_0", args.workers, args.workdir, vendor, env)}
    print(json.dumps(doc, indent=2))
    if args.results:
        append_results(repo / "bench" / "RESULTS.md", doc)


def append_results(path: Path, d: dict) -> None:
    ref, ours = d["llama_cpp_convert_hf_to_gguf"], d["dshub"]
    text = f"""
## DeepSeek-V4 -> GGUF (MXFP4 experts kept), dshub vs llama.cpp convert_hf_to_gguf.py (`python bench/v4.py --workers {d['workers']}`)

Same run, same warm input ({d['input_bytes'] / 1e6:.0f} MB synthetic V4 `{d['preset']}` preset: MXFP4 experts, e8m0
block-FP8 elsewhere), {d['machine']}; llama.cpp from {d['llama_cpp_python']}. Wall time and peak RSS of each child.

| contender | wall s | CPU s | peak RSS MB |
|---|---|---|---|
| llama.cpp `convert_hf_to_gguf.py` (its V4 types: MXFP4 experts, FP8 -> Q8_0) | {ref['wall_s']} | {ref['cpu_s']} | {ref['peak_rss_mb']} |
| `dshub convert --to gguf --quant MXFP4_MOE` | {ours['wall_s']} | {ours['cpu_s']} | {ours['peak_rss_mb']} |

{ratio_lines(d, TARGETS)}
"""
    with open(path, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
