"""Where repolm finds llama.cpp's tools: the server (an engine for a laptop, and for the engine tests) and
its LoRA converter, built and copied by scripts/build_llama_server.sh from the llama-cpp-python sdist."""

from __future__ import annotations

import os
from pathlib import Path

VERSION = "0.3.36"  # the llama-cpp-python sdist whose llama.cpp is built


def tools_dir() -> Path:
    base = os.environ.get("REPOLM_ENGINE_DIR") or Path.home() / ".cache" / "repolm" / "engines"
    return Path(base) / f"llama-server-{VERSION}"


def server_binary() -> Path:
    return tools_dir() / "llama-server"


def lora_converter() -> Path:
    """llama.cpp's PEFT-LoRA-to-GGUF converter; its `conversion` and `gguf` packages lie beside it."""
    return tools_dir() / "convert" / "convert_lora_to_gguf.py"
