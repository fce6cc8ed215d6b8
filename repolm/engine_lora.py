"""Adapters on the engine: a team's vLLM serves each repository's promoted adapter beside the base model.

With `[model] engine_lora = true`, promoting an adapter (`repolm retrain`, `repolm adapters activate` or
`rollback`) loads it onto the running vLLM through its runtime LoRA API (`/v1/load_lora_adapter`; vLLM
runs with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`) under a versioned name,
`<repository>--<adapter>`, and unloads this repository's other adapters. The engine then holds exactly
one adapter per repository, so every `repolm serve` pointed at it, on any developer's machine, finds the
name to request in the engine's model list: no shared file, and a rollback is one more load.

The adapter folder is read by the engine: the nightly job runs on the engine's machine, or the index
directory lies on a filesystem both see under the same path.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from repolm.config import ModelSection
from repolm.engine_http import EngineError, describe_error, engine_request

SEPARATOR = "--"  # between the repository's folder name and the adapter's


def engine_name(root: Path, adapter: str) -> str:
    """The versioned name an adapter of the repository at `root` is served under."""
    return f"{root.resolve().name}{SEPARATOR}{adapter}"


def _call(settings: ModelSection, endpoint: str, body: dict | None = None) -> str:
    request = engine_request(settings, endpoint, body)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
            return response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as error:
        problem = describe_error(error)
        raise EngineError(f"the engine at {settings.url} refused {endpoint}: {problem}") from error


def served_adapters(settings: ModelSection, root: Path) -> list[str]:
    """The names of this repository's adapters the engine serves now, in the order it lists them."""
    prefix = engine_name(root, "")
    try:
        listed = json.loads(_call(settings, "models"))["data"]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise EngineError(f"the engine at {settings.url} listed no models: {error}") from error
    return [entry["id"] for entry in listed if str(entry.get("id", "")).startswith(prefix)]


def publish(settings: ModelSection, root: Path, adapter: str | None, folder: Path | None) -> None:
    """Make the engine serve `adapter` (None: the base model) for this repository: load it, then unload
    the repository's others. Loading first means no request ever finds neither."""
    name = engine_name(root, adapter) if adapter else None
    loaded = served_adapters(settings, root)
    if name and name not in loaded:
        assert folder is not None, "an adapter to load needs its folder"
        _call(settings, "load_lora_adapter", {"lora_name": name, "lora_path": str(folder.resolve())})
    for other in loaded:
        if other != name:
            _call(settings, "unload_lora_adapter", {"lora_name": other})
