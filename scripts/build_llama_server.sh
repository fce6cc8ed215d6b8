#!/usr/bin/env bash
# Builds llama.cpp's OpenAI-compatible server (llama-server) from the llama.cpp that the llama-cpp-python
# sdist vendors, for the engine tests (tests/test_engine_backend.py) and a laptop's engine (docs/DEPLOY.md),
# and keeps its LoRA converter (`repolm adapters export`). PyPI has no wheel of it for this platform, only
# the sdist. Both go to ${REPOLM_ENGINE_DIR:-~/.cache/repolm/engines}/llama-server-$VERSION (repolm/llama_cpp.py),
# built once.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36  # repolm/llama_cpp.py
DEST=${REPOLM_ENGINE_DIR:-$HOME/.cache/repolm/engines}/llama-server-$VERSION
[ -x "$DEST/llama-server" ] && { echo "$DEST/llama-server"; exit 0; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK"/llama_cpp_python-$VERSION.tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
# Tuned for this CPU, except AMX: its kernels need the tile state the kernel grants on request, which a
# virtual machine may not grant (llama-server then dies on its first matrix product).
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
  -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" >/dev/null
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >/dev/null
mkdir -p "$DEST/convert"
cp -r "$SRC/convert_lora_to_gguf.py" "$SRC/conversion" "$SRC/gguf-py" "$DEST/convert/"
cp "$WORK/build/bin/llama-server" "$DEST/llama-server.partial"
mv "$DEST/llama-server.partial" "$DEST/llama-server"  # whole or absent: an interrupted build leaves nothing
echo "$DEST/llama-server"
