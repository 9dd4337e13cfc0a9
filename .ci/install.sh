#!/usr/bin/env bash
# Install dshub with its test extra and every tool the tests use. The README's test command runs it, then pytest:
#   bash .ci/install.sh && python3 -m pytest
# Installs torch (CPU build) and `pip install -e ".[test]"`, llama-cpp-python (.ci/llama-cpp.sh: cached wheel, else
# built once) and the engine-parser venv (.ci/recipe-validators.sh). Each step is idempotent; any failure stops here,
# so no test later skips or fails for a missing tool. PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
PY="${PYTHON:-python3}"

step() { echo "== $*" >&2; }

step "torch (CPU build) and dshub[test]"
# The CPU build of torch first: a bare torch requirement would resolve to a multi-GB CUDA build.
"$PY" -m pip install --quiet "torch==2.13.0"
"$PY" -m pip install --quiet -e ".[test]"
step "ray (dshub[ray]: the --executor ray tests start a local cluster with its \`ray\` command)"
"$PY" -m pip install --quiet -e ".[ray]"
"$PY" -c "import ray, shutil, sys, pathlib; assert (pathlib.Path(sys.executable).parent / 'ray').exists() or shutil.which('ray'), 'no ray command'"

"$PY" -c "import tiktoken, onnx, onnxruntime, onnxruntime_genai, jsonschema"  # the test extra's consumers, present

step "llama-cpp-python (.ci/llama-cpp.sh)"
PYTHON="$PY" bash .ci/llama-cpp.sh
step "recipe validators (.ci/recipe-validators.sh)"
PYTHON="$PY" bash .ci/recipe-validators.sh

step "ready: run the tests with $PY -m pytest"
