"""Editor settings (`initializationOptions`, `workspace/didChangeConfiguration`) applied onto a `Config`.

The editor speaks camelCase JSON shaped like the extension's settings::

    {"repolm": {"model": "...", "adapter": "...",
                "completion": {"enabled": true, "maxTokens": 32},
                "explain": {"enabled": true, "maxTokens": 64},
                "search": {"mode": "hybrid", "perFileCap": 3}, "index": {...}}}

Settings land on the same dataclasses as `repolm.toml`, so the precedence chain stays one mechanism.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from repolm.config import Config, ConfigError

# Keys of the "completion" and "explain" groups, mapped onto `ServeConfig` fields.
_SERVE_GROUPS = {
    "completion": {
        "enabled": "completion_enabled",
        "maxTokens": "completion_max_tokens",
        "blockMaxTokens": "block_max_tokens",
        "budget": "completion_budget",
        "snippets": "completion_snippets",
        "cacheSize": "completion_cache_size",
    },
    "explain": {"enabled": "explain_enabled", "maxTokens": "explain_max_tokens", "budget": "explain_budget"},
}
_SERVE_TOP = {
    "model": "model",
    "adapter": "adapter",
    "maxDocumentBytes": "max_document_bytes",
    "draftTokens": "draft_tokens",
    "int8Decoding": "int8_decoding",
    "promptCaches": "prompt_caches",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def apply_settings(config: Config, settings: Any, root: Path | None = None) -> tuple[Config, list[str]]:
    """`config` with every valid editor setting applied, and one message per setting left out.

    A single unknown or mistyped key (an older or newer extension) must not cost the user every
    other setting, so each one is applied on its own and problems are reported, not raised. With the
    workspace `root`, an index folder the workspace cannot use (`Config.index_path`) is left out too.
    """
    if settings is None:
        return config, []
    if not isinstance(settings, dict):
        return config, [f"settings must be an object, got {type(settings).__name__}"]
    settings = settings.get("repolm", settings)
    if not isinstance(settings, dict):
        return config, ["settings.repolm must be an object"]
    problems: list[str] = []
    for section, values in _assignments(settings, problems):
        try:
            candidate = config.with_overrides(section, **values)
            if root is not None and section == "index":
                candidate.index_path(root)
            config = candidate
        except ConfigError as error:
            problems.append(str(error))
    return config, problems


def _assignments(settings: dict[str, Any], problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(config section, {field: value}) for each setting, one field at a time."""
    found: list[tuple[str, dict[str, Any]]] = []
    for key, value in settings.items():
        if key in _SERVE_TOP:
            found.append(("serve", {_SERVE_TOP[key]: value}))
        elif key in _SERVE_GROUPS and isinstance(value, dict):
            for name, field_value in value.items():
                if name in _SERVE_GROUPS[key]:
                    found.append(("serve", {_SERVE_GROUPS[key][name]: field_value}))
                else:
                    problems.append(f"unknown setting {key}.{name}")
        elif key in {"search", "index"} and isinstance(value, dict):
            found.extend((key, {_snake(name): v}) for name, v in value.items())
        elif key in _SERVE_GROUPS or key in {"search", "index"}:
            problems.append(f"setting {key} must be an object")
        else:
            problems.append(f"unknown setting {key}")
    return found
