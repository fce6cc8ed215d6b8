"""Configuration: defaults in code, overridden by `repolm.toml` at the repo root, then by the caller.

The precedence chain (code < repolm.toml < CLI flags / LSP settings) is the one DESIGN.md promises;
callers apply their own overrides with `Config.with_overrides`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "repolm.toml"


class ConfigError(ValueError):
    """A `repolm.toml` that cannot be read or names unknown settings."""


@dataclass(frozen=True)
class IndexConfig:
    index_dir: str = ".repolm"  # relative to the repo root, or absolute
    include: tuple[str, ...] = ()  # gitignore-style globs; empty means everything
    exclude: tuple[str, ...] = ()  # gitignore-style globs, applied after .gitignore
    max_file_bytes: int = 1024 * 1024
    max_chunk_lines: int = 80
    # Folders that hold third-party or generated code; matched by name at any depth.
    skip_dirs: tuple[str, ...] = (
        ".git",
        ".hg",
        ".svn",
        ".repolm",
        "node_modules",
        "vendor",
        "third_party",
        "site-packages",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "dist",
        "build",
        "target",
        ".next",
        ".gradle",
        ".idea",
        ".eggs",
    )
    embedding_model: str = ""  # a local sentence-transformers folder; empty means the embedded MiniLM
    # Small batches keep MiniLM's activations in the CPU caches: 16 beat 64 (bench/bench_embedding.py).
    embedding_batch_size: int = 16
    embedding_threads: int = 2  # Python threads sharing the embedder; see Embedder.encode
    # The signature, docstring and first lines: most of the signal, at CPU speed. 96 instead of 128:
    # Django's full index 353 -> 263 s (two runs), hybrid Recall@5 -0.3 points on Django and -1.5 on
    # requests (docs/BENCHMARKS.md).
    embedding_max_tokens: int = 96


@dataclass(frozen=True)
class SearchConfig:
    mode: str = "hybrid"  # bm25 | dense | hybrid
    fusion: str = "rrf"  # rrf | weighted
    rrf_k: int = 60
    dense_weight: float = 0.5  # only for fusion = "weighted"
    # Every mode also reads the definitions' docstrings (`Chunk.summary`): BM25 as a field of their own,
    # dense by their own vectors (a chunk scores its nearer vector).
    summaries: bool = True
    per_file_cap: int = 3
    candidates: int = 50  # hits taken from each retriever before fusion


@dataclass(frozen=True)
class ServeConfig:
    """Completion and explain settings for `repolm serve`, `complete` and `explain`."""

    model: str = ""  # a local Hugging Face folder; empty means the embedded SmolLM2-135M
    adapter: str = ""  # a PEFT adapter folder (or a symlink to the active one); watched for changes
    completion_enabled: bool = True
    # Budgets sized for the 135M model on a 2-core CPU: prefill dominates latency.
    completion_budget: int = 768  # prompt tokens: snippets plus the code before the cursor
    completion_max_tokens: int = 32  # single-line completions
    block_max_tokens: int = 96  # multi-line completions, when the cursor opens a block
    completion_snippets: int = 4  # retrieved chunks offered to the prompt
    completion_cache_size: int = 128
    explain_enabled: bool = True  # the hover adds a model-written explanation to the symbol card
    explain_budget: int = 768
    explain_max_tokens: int = 64
    max_document_bytes: int = 2 * 1024 * 1024  # bigger open buffers get no completion
    # The language server skips bigger messages unread (editors send whole files on didOpen).
    max_message_bytes: int = 64 * 1024 * 1024
    # Prompt-lookup draft length for completions and explanations (0: none); see repolm.model.generate.
    # On the CPU one forward pass over 8 tokens costs what a pass over 1 does.
    draft_tokens: int = 8
    # Passes after the first read int8 copies of the weights where the CPU has the kernel, drafts then
    # cut to 3 tokens (repolm.int8): explanation p50 and typing p95 0.62x of bf16's in one run, for
    # about 155 MiB more memory once the first request asks (bench/bench_int8.py).
    int8_decoding: bool = True
    # KV caches of recent prompts kept for later requests (repolm.model._PromptCaches): a completion
    # that comes back after a hover's explanation, or from another file, reuses its place's cache.
    # For the embedded model on the CPU each holds 45 KiB per token of its buffer, 45 MiB for a full
    # 768-token prompt; keeping 3 instead of 1 cost the server 124 and 214 MiB in two runs of
    # bench/bench_prompt_caches.py.
    prompt_caches: int = 3


TASKS = ("completion", "explain", "plan")  # what a RAFT dataset can hold


@dataclass(frozen=True)
class TrainSection:
    """`[train]`: what a user sets for `repolm train` / `retrain`; the rest lives in the training configs."""

    profile: str = "quick"  # quick | full (see repolm.training.finetune.PROFILES)
    oracle_probability: float = 0.8  # RAFT's P: share of examples whose prompt holds the oracle documents
    distractors: int = 3  # distractor documents per example (hard negatives, then one random chunk)
    tasks: tuple[str, ...] = TASKS  # a subset trains only those (e.g. ["plan"] for the planner alone)
    seed: int = 0
    # Optional teacher for explanation answers: an OpenAI-compatible endpoint; off while base_url is empty.
    teacher_base_url: str = ""
    teacher_model: str = ""
    teacher_api_key_env: str = ""  # the name of the environment variable holding the key, never the key

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown or not self.tasks:
            raise ConfigError(f"train.tasks: {unknown or 'empty'}; choose from {', '.join(TASKS)}")


@dataclass(frozen=True)
class Config:
    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    train: TrainSection = field(default_factory=TrainSection)

    def with_overrides(self, section: str, **values: Any) -> Config:
        """A copy with some settings of one section replaced; `None` values are ignored."""
        current = getattr(self, section)
        changes = {key: value for key, value in values.items() if value is not None}
        return dataclasses.replace(self, **{section: _replace_checked(current, changes, section)})

    def index_path(self, repo_root: Path) -> Path:
        path = Path(self.index.index_dir).expanduser()
        return path if path.is_absolute() else repo_root / path


def load_config(repo_root: Path) -> Config:
    """Defaults overridden by the repo's `repolm.toml`, if it has one."""
    config = Config()
    config_file = repo_root / CONFIG_FILE
    if not config_file.is_file():
        return config
    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{config_file}: {error}") from error
    for section, values in data.items():
        if section not in {f.name for f in dataclasses.fields(Config)} or not isinstance(values, dict):
            raise ConfigError(f"{config_file}: unknown section [{section}]")
        config = config.with_overrides(section, **values)
    return config


def _replace_checked(section_value: Any, changes: dict[str, Any], section: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(section_value)}
    for key, value in list(changes.items()):
        if key not in known:
            raise ConfigError(f"unknown setting {section}.{key}")
        default = getattr(section_value, key)
        if isinstance(default, tuple):
            changes[key] = tuple(value)
        elif not isinstance(value, type(default)) and not (
            isinstance(default, float) and isinstance(value, int)
        ):
            raise ConfigError(f"{section}.{key} must be {type(default).__name__}, got {value!r}")
    return dataclasses.replace(section_value, **changes)
