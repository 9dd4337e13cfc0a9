"""The Examples block of every command's `--help`, one table keyed by command name (tests hold that every command
in `dshub.cli.COMMANDS` has one, and that each example parses)."""
from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "synth": ("dshub synth ./tiny                      # a tiny block-FP8 checkpoint with the real layout",
              "dshub synth ./bench --preset bench --seed 1"),
    "info": ("dshub info ~/models/DeepSeek-V3           # architecture, params, encodings, output sizes",
             "dshub info ./R1-Q4_K_M-00001-of-00009.gguf --json"),
    "verify": ("dshub verify ~/models/DeepSeek-R1          # headers, index, tensors, FP8 scales",
               "dshub verify ~/models/DeepSeek-R1 --deep --hashes",
               "dshub verify ./R1-int4 --hashes            # a dshub output against its own manifest",
               "dshub verify ./R1 --against-hub deepseek-ai/DeepSeek-R1 --json"),
    "download": ("dshub download deepseek-ai/DeepSeek-R1                    # into the HF cache; a rerun resumes",
                 "dshub download deepseek-ai/DeepSeek-V3 --local-dir ./V3 --include '*.json' --dry-run",
                 "HF_ENDPOINT=https://hf-mirror.com dshub download deepseek-ai/DeepSeek-V3.1",
                 "dshub download deepseek-v4-flash --dry-run          # a catalog name is its release's repository",
                 "dshub download deepseek-ai/DeepSeek-V3 --local-dir /shared/V3 --executor ray --ray-address 10.0.0.1:6379"),
    "convert": ("dshub convert ~/models/DeepSeek-R1 --to bf16 --out ./R1-bf16",
                "dshub convert deepseek-ai/DeepSeek-R1 --to int4 --format compressed-tensors --out ./R1-int4",
                "dshub convert ./R1 --to gguf --quant Q4_K_M --split-max-size 50G --out ./R1-gguf --dry-run"),
    "plan": ("dshub plan deepseek-r1 --gpu h200                 # 8x H200: TP8+EP8",
             "dshub plan deepseek-v3 --gpu h100 --nodes 2 --goal throughput --json",
             "dshub plan deepseek-r1 --engine llamacpp --weights gguf:Q2_K --gpu rtx4090 --gpus-per-node 1 --host-ram 128GiB"),
    "recipe": ("dshub recipe deepseek-r1 --gpu h200 --format compose --out deploy/",
               "dshub recipe deepseek-v3 --gpu h100 --nodes 2 --rdma --format k8s",
               "dshub recipe ./DeepSeek-V3-int4 --engine sglang --gpu h20 --json"),
    "run": ("dshub run examples/pipeline.yaml --dry-run        # the whole plan: bytes, peak disk, refused layouts",
            "dshub run examples/pipeline.yaml --json            # a rerun skips unchanged, verified steps",
            "dshub run examples/pipeline.yaml --executor ray --ray-address 10.0.0.1:6379",
            "dshub run examples/pipeline.yaml --emit k8s --executor ray --nodes 4   # KubeRay RayJob"),
}


def epilog(name: str) -> str | None:
    """The Examples block for `name`'s help; None for a command without one."""
    lines = EXAMPLES.get(name)
    if not lines:
        return None
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)
