"""The pipeline file the pipeline tests run: download from the loopback fake hub -> verify -> BF16 + INT4 + GGUF
Q4_K_M -> recipe."""
from __future__ import annotations

from tests.support.fakehub import REPO

PIPELINE = f"""\
source:
  repo: {REPO}
  revision: main
  token: ${{HF_TOKEN}}
workdir: work
steps:
  - name: fetch
    download: {{}}
  - name: check
    verify: {{input: fetch}}
  - name: bf16
    convert: {{input: fetch, to: bf16, after: [check]}}
  - name: int4
    convert: {{input: fetch, to: int4, group_size: 32, after: [check]}}
  - name: q4
    convert: {{input: fetch, to: gguf, quant: Q4_K_M, after: [check]}}
  - name: serve
    recipe: {{input: int4, engine: vllm, gpu: h200, gpus_per_node: 1, format: sh}}
"""
STEPS = ["fetch", "check", "bf16", "int4", "q4", "serve"]
