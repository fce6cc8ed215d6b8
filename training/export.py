"""`repolm adapters export`: a PEFT LoRA adapter as the GGUF LoRA llama.cpp's server loads (`--lora`), for
a laptop's engine. llama.cpp's own converter does the work (repolm.llama_cpp), run in a child process
with the interpreter repolm runs on; it reads the base model's Hugging Face folder for the tensor names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from repolm.llama_cpp import lora_converter


class ExportError(RuntimeError):
    """The adapter could not be exported (no converter, or the converter failed)."""


def export_gguf(adapter: Path, base_folder: Path, out: Path) -> Path:
    """Write `adapter` (a PEFT folder) to `out` as a GGUF LoRA; whole or not at all."""
    converter = lora_converter()
    if not converter.is_file():
        raise ExportError(f"{converter} is missing: scripts/build_llama_server.sh builds llama.cpp's tools")
    if not (adapter / "adapter_config.json").is_file():
        raise ExportError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json)")
    partial = out.with_name(out.name + ".partial")
    command = [sys.executable, str(converter), "--base", str(base_folder), "--outfile", str(partial)]
    command.append(str(adapter))
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise ExportError(f"llama.cpp's converter failed: {done.stderr.strip()[-1500:]}")
    partial.replace(out)
    return out
