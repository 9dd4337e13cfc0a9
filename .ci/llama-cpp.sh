#!/usr/bin/env bash
# Install llama-cpp-python (compiles llama.cpp) for the llama.cpp oracle/runtime tests.
# Idempotent: skips when `import llama_cpp` works; reuses a cached wheel when present.
# Also leaves the extracted sdist (vendor/llama.cpp: convert_hf_to_gguf.py, gguf-py, ggml sources)
# under $DSHUB_LLAMA_CACHE/src for benchmarks that run llama.cpp's converter.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${DSHUB_LLAMA_CACHE:-$HOME/.cache/dshub/llama-cpp}"
PY="${PYTHON:-python}"
mkdir -p "$CACHE"
SDIST="$CACHE/llama_cpp_python-$VERSION.tar.gz"
SRC="$CACHE/src/llama_cpp_python-$VERSION"

if [ ! -f "$SDIST" ]; then
  "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE" >&2
fi
if [ ! -d "$SRC" ]; then
  mkdir -p "$CACHE/src" && tar -xzf "$SDIST" -C "$CACHE/src"
fi

if "$PY" -c "import llama_cpp" 2>/dev/null; then
  echo "llama-cpp-python already importable; skipping build" >&2
  exit 0
fi

WHEEL=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  start=$(date +%s)
  # Portable CPU build (no -march=native), no multimodal library (not needed, saves build time).
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}" \
    "$PY" -m pip wheel --no-deps "$SDIST" -w "$CACHE" >&2
  echo "llama-cpp-python wheel built in $(( $(date +%s) - start )) s" >&2
  WHEEL=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
fi
"$PY" -m pip install "$WHEEL" >&2
"$PY" -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__)"
