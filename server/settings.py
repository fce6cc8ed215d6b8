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
_SERVE_TOP = {"model": "model", "adapter": "adapter", "maxDocumentBytes": "max_document_bytes"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def apply_settings(config: Config, settings: Any) -> Config:
    """`config` with the editor's settings applied; raises ConfigError naming the first bad one."""
    if settings is None:
        return config
    if not isinstance(settings, dict):
        raise ConfigError(f"settings must be an object, got {type(settings).__name__}")
    settings = settings.get("repolm", settings)
    if not isinstance(settings, dict):
        raise ConfigError("settings.repolm must be an object")
    serve: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _SERVE_TOP:
            serve[_SERVE_TOP[key]] = value
        elif key in _SERVE_GROUPS:
            group = _mapping(key, value)
            for name, field_value in group.items():
                if name not in _SERVE_GROUPS[key]:
                    raise ConfigError(f"unknown setting {key}.{name}")
                serve[_SERVE_GROUPS[key][name]] = field_value
        elif key in {"search", "index"}:
            values = {_snake(name): v for name, v in _mapping(key, value).items()}
            config = config.with_overrides(key, **values)
        else:
            raise ConfigError(f"unknown setting {key}")
    return config.with_overrides("serve", **serve)


def _mapping(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"setting {key} must be an object")
    return value
