#!/usr/bin/env bash
# llama.cpp's own OpenAI-compatible server, `llama-server`, for the `openai` engine's tests.
#
# Built from the llama.cpp sources inside llama-cpp-python's sdist on PyPI (vendor/llama.cpp):
# the same llama.cpp the llamacpp plugin runs, from a registry CI reaches (GitHub is not
# reachable there). Portable CPU build (GGML_NATIVE=OFF), static, server target only: about
# 6 minutes on 2 cores, once; the binary is kept in .cache/llama-server/VERSION/ and reused.
# Prints the binary's path on stdout (everything else goes to stderr).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=${LLAMA_CPP_PYTHON_VERSION:-$(sed -n 's/^llama-cpp-python==//p' "$ROOT/constraints/cpu.txt")}
OUT=$ROOT/.cache/llama-server/$VERSION
BIN=$OUT/llama-server
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
for tool in cmake make g++; do
  command -v "$tool" >/dev/null || { echo "build-llama-server: $tool is needed" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS
echo "llama-server: building llama.cpp from llama-cpp-python $VERSION's sdist (once; ~6 min on 2 cores)" >&2
"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work" >&2
tar xzf "$work"/llama_cpp_python-"$VERSION".tar.gz -C "$work"
src=$work/llama_cpp_python-$VERSION/vendor/llama.cpp
log=$work/build.log
if ! { cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
         -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
         -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF &&
       cmake --build "$work/build" --target llama-server -j "$(nproc)"; } >"$log" 2>&1; then
  echo "llama-server: the build failed; the end of its log:" >&2
  tail -n 60 "$log" >&2
  exit 1
fi
mkdir -p "$OUT"
cp "$work/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "llama-server: built in $((SECONDS - start)) s: $("$BIN" --version 2>&1 | head -1)" >&2
echo "$BIN"
