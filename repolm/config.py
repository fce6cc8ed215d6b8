"""Configuration: defaults in code, overridden by `repolm.toml` at the repo root, then by the caller.

The precedence chain is code < repolm.toml < CLI flags / LSP settings (docs/ARCHITECTURE.md);
callers apply their own overrides with `Config.with_overrides`.

Every setting declares what it accepts next to its default (`setting(...)`: a range, a list of
choices); each section checks its values when it is built, so `repolm.toml`, CLI flags and editor
settings all meet the same checks, and a bad value fails at once with its key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

CONFIG_FILE = "repolm.toml"
DEFAULT_INDEX_DIR = ".repolm"
# Where trained adapters live under the index folder, and the link to the active one: the adapter
# registry (repolm.training.registry) writes them and the server watches the link, so both read them here.
ADAPTERS = "adapters"
ACTIVE_LINK = "active"
# Fine-tuned retrievers (embedding models) live in their own registry inside the adapters area, with
# the same ACTIVE/active/HISTORY layout: the indexer embeds with the active one when
# `[index] embedding_model` is empty, and the server reloads its embedder when the link changes.
RETRIEVERS = "retrievers"
# A retriever's model sits in this subfolder: the model folder's content is its vectors' cache key, and
# the manifest beside it changes after evaluation.
RETRIEVER_MODEL = "model"
SEARCH_MODES = ("bm25", "dense", "hybrid")
FUSIONS = ("rrf", "weighted")
# The keys of repolm.training.finetune.PROFILES, and auto: standard on a CPU, full on a GPU.
TRAIN_PROFILES = ("auto", "quick", "standard", "full")
TASKS = ("completion", "explain", "plan")  # what a RAFT dataset can hold

# How a long job reports its progress: (stage, done, total). The CLI draws a bar from it and the language
# server sends $/progress. Declared here because every layer, the indexer included, may import the config.
Progress = Callable[[str, int, int], None]


class ConfigError(ValueError):
    """A setting that cannot be used: unknown, of the wrong type, out of range or not one of its choices."""


def setting(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    nonempty: bool = False,
) -> Any:
    """A field with its default and the values it accepts; its type is the default's."""
    rule = {"low": low, "high": high, "choices": choices, "nonempty": nonempty}
    return field(default=default, metadata=rule)


class _Section:
    """Checks (and normalises: lists to tuples, integers to floats) every field when a section is built."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _checked(f"{self.name}.{spec.name}", getattr(self, spec.name), spec)
            object.__setattr__(self, spec.name, value)


def _checked(key: str, value: Any, spec: dataclasses.Field) -> Any:
    default, rule = spec.default, spec.metadata
    shown = list(value) if isinstance(value, tuple) else value

    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{key} = {shown!r}: {problem}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise fail("must be true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("must be an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail("must be a number")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise fail("must be a string")
    elif isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
            raise fail("must be a list of strings")
        value = tuple(value)
    if rule.get("low") is not None and value < rule["low"]:
        raise fail(f"must be at least {rule['low']:g}")
    if rule.get("high") is not None and value > rule["high"]:
        raise fail(f"must be at most {rule['high']:g}")
    if rule.get("nonempty") and not value:
        raise fail("must not be empty")
    choices = rule.get("choices")
    if choices and isinstance(value, tuple) and any(item not in choices for item in value):
        raise fail(f"choose from {', '.join(choices)}")
    if choices and isinstance(value, str) and value not in choices:
        raise fail(f"choose one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class IndexConfig(_Section):
    name: ClassVar[str] = "index"

    # Relative to the repo root, or absolute; a folder of repolm's own (see Config.index_path).
    index_dir: str = setting(DEFAULT_INDEX_DIR, nonempty=True)
    include: tuple[str, ...] = setting(())  # gitignore-style globs; empty means everything
    exclude: tuple[str, ...] = setting(())  # gitignore-style globs, applied after .gitignore
    max_file_bytes: int = setting(1024 * 1024, low=1)
    max_chunk_lines: int = setting(80, low=1)
    # Folders that hold third-party or generated code; matched by name at any depth.
    skip_dirs: tuple[str, ...] = setting(
        (
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
    )
    # A local sentence-transformers folder; empty means the active fine-tuned retriever
    # (`repolm train-retriever`), else the embedded MiniLM.
    embedding_model: str = setting("")
    # Small batches keep MiniLM's activations in the CPU caches (docs/PERFORMANCE.md, Indexing).
    embedding_batch_size: int = setting(16, low=1)
    embedding_threads: int = setting(2, low=1)  # Python threads sharing the embedder; see Embedder.encode
    # The signature, docstring and first lines: most of the signal, at CPU speed. 96 rather than 128
    # indexes a large repository much faster for little recall (bench/NOTES.md, Indexing).
    embedding_max_tokens: int = setting(96, low=1)


@dataclass(frozen=True)
class SearchConfig(_Section):
    name: ClassVar[str] = "search"

    mode: str = setting("hybrid", choices=SEARCH_MODES)
    fusion: str = setting("rrf", choices=FUSIONS)
    rrf_k: int = setting(60, low=0)
    dense_weight: float = setting(0.5, low=0, high=1)  # only for fusion = "weighted"
    # Every mode also reads the definitions' docstrings (`Chunk.summary`): BM25 as a field of their own,
    # dense by their own vectors (a chunk scores its nearer vector).
    summaries: bool = setting(True)
    per_file_cap: int = setting(3, low=0)  # 0: no cap
    candidates: int = setting(50, low=1)  # hits taken from each retriever before fusion


# The fewest prompt tokens that still hold a prompt's fixed header and some code (repolm.prompt).
_MIN_BUDGET = 64


# `[serve] template`'s values: repolm.fim holds the layouts (the config is the bottom layer: it names them).
COMPLETION_TEMPLATES = (
    "auto", "plain", "qwen", "codegemma", "starcoder2", "starcoder", "deepseek", "codellama"
)  # fmt: skip


@dataclass(frozen=True)
class ServeConfig(_Section):
    """Completion and explain settings for `repolm serve`, `complete` and `explain`."""

    name: ClassVar[str] = "serve"

    model: str = setting("")  # a local Hugging Face folder; empty means the embedded SmolLM2-135M
    adapter: str = setting("")  # a PEFT adapter folder (or a symlink to the active one); watched for changes
    # The completion layout (repolm.fim): "auto" recognises a FIM family from the tokenizer's special
    # tokens; "plain" (the embedded model's) or a family's name forces one. Training lays RAFT examples out
    # with it too.
    template: str = setting("auto", choices=COMPLETION_TEMPLATES)
    completion_enabled: bool = setting(True)
    # Budgets sized for the 135M model on a 2-core CPU: prefill dominates latency. Prompt tokens:
    # snippets plus the code before the cursor.
    completion_budget: int = setting(768, low=_MIN_BUDGET)
    completion_max_tokens: int = setting(32, low=1)  # single-line completions
    block_max_tokens: int = setting(96, low=1)  # multi-line completions, when the cursor opens a block
    completion_snippets: int = setting(4, low=0)  # retrieved chunks offered to the prompt
    completion_per_file_cap: int = setting(2, low=0)  # at most this many of them from one file (0: no cap)
    # The definitions of what the code above the cursor uses (the symbol graph resolves its names) join
    # the completion's retrieval ranking, their ranks weighing this much against the query's (0: off).
    completion_context_weight: float = setting(1.0, low=0)
    completion_cache_size: int = setting(128, low=0)
    explain_enabled: bool = setting(True)  # the hover adds a model-written explanation to the symbol card
    explain_budget: int = setting(768, low=_MIN_BUDGET)
    explain_max_tokens: int = setting(64, low=1)
    # `repolm ask`'s written answer (RoG's reasoning step) before the one read off the graph: "adapter"
    # only with a fine-tuned adapter active (the base model's words seldom cite a path, so the verifier
    # drops most, and cost about 2 s on this CPU), "always", or "never".
    ask_reasoning: str = setting("adapter", choices=("adapter", "always", "never"))
    max_document_bytes: int = setting(2 * 1024 * 1024, low=1)  # bigger open buffers get no completion
    # The language server skips bigger messages unread (editors send whole files on didOpen).
    max_message_bytes: int = setting(64 * 1024 * 1024, low=1024)
    # Prompt-lookup draft length for completions and explanations (0: none); see repolm.model.generate.
    # On the CPU one forward pass over 8 tokens costs what a pass over 1 does.
    draft_tokens: int = setting(8, low=0)
    # Passes after the first read int8 copies of the weights where the CPU has the kernel, drafts then
    # cut to 3 tokens (repolm.int8): faster decoding for some memory, taken when the first request asks
    # (docs/PERFORMANCE.md, Language server).
    int8_decoding: bool = setting(True)
    # KV caches of recent prompts kept for later requests (repolm.model._PromptCaches): a completion
    # that comes back after a hover's explanation, or from another file, reuses its place's cache.
    # For the embedded model on the CPU each holds 45 KiB per token of its buffer, 45 MiB for a full
    # 768-token prompt (docs/PERFORMANCE.md, Language server).
    prompt_caches: int = setting(3, low=1)


@dataclass(frozen=True)
class ModelSection(_Section):
    """`[model]`: where generation runs. "local": repolm's own runtime over `[serve] model` (the embedded
    SmolLM2-135M by default). "openai": an engine's OpenAI-compatible completions endpoint (vLLM,
    llama.cpp's server, Ollama, TGI, LM Studio) serving the same model; repolm still retrieves and builds
    the prompt, with the tokenizer of `[serve] model`."""

    name: ClassVar[str] = "model"

    backend: str = setting("local", choices=("local", "openai"))
    url: str = setting("")  # the endpoint's base, e.g. "http://127.0.0.1:8080/v1"
    served_name: str = setting("")  # the model name the engine serves it under
    # The name of the environment variable holding the API key, never the key.
    api_key_env: str = setting("")
    timeout_seconds: float = setting(30.0, low=0.1)
    # "tokens": the prompt's token ids, exactly what training saw (vLLM, llama.cpp); "text" for engines
    # that take text only (Ollama, TGI).
    prompt_as: str = setting("tokens", choices=("tokens", "text"))
    # vLLM started with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True: promoting an adapter
    # loads it there under a versioned name, which requests then name (repolm/engine_lora.py).
    engine_lora: bool = setting(False)

    @property
    def loads_adapters(self) -> bool:
        """Whether promoted adapters go onto the engine (vLLM's runtime LoRA loading)."""
        return self.backend == "openai" and self.engine_lora


@dataclass(frozen=True)
class TrainSection(_Section):
    """`[train]`: what a user sets for `repolm train` / `retrain`; the rest lives in the training configs."""

    name: ClassVar[str] = "train"

    profile: str = setting("auto", choices=TRAIN_PROFILES)
    # RAFT's P: share of examples whose prompt holds the oracle documents.
    oracle_probability: float = setting(0.8, low=0, high=1)
    # Distractor documents per example (hard negatives, then one random chunk).
    distractors: int = setting(3, low=0)
    # A subset trains only those (e.g. ["plan"] for the planner alone).
    tasks: tuple[str, ...] = setting(TASKS, choices=TASKS, nonempty=True)
    seed: int = setting(0, low=0)
    # Optional teacher for explanation answers: an OpenAI-compatible endpoint; off while base_url is empty.
    teacher_base_url: str = setting("")
    teacher_model: str = setting("")
    # The name of the environment variable holding the key, never the key.
    teacher_api_key_env: str = setting("")
    # `repolm retrain` also fine-tunes the retriever (gated on held-out retrieval) before the adapter.
    retriever: bool = setting(True)
    # A launcher for the training step, e.g. "accelerate launch --config_file FILE --num_processes 8":
    # it starts the processes (GPUs, machines) that train the adapter; empty: train in this process.
    launch: str = setting("")


@dataclass(frozen=True)
class Config:
    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)

    def with_overrides(self, section: str, **values: Any) -> Config:
        """A copy with some settings of one section replaced (and checked); `None` values are ignored."""
        current = getattr(self, section)
        changes = {key: value for key, value in values.items() if value is not None}
        known = {spec.name for spec in dataclasses.fields(current)}
        for key in changes:
            if key not in known:
                raise ConfigError(f"unknown setting {section}.{key}")
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **changes)})

    def index_path(self, repo_root: Path) -> Path:
        """The index folder for the repository at `repo_root`. It is repolm's own (`--rebuild` empties
        it of repolm's files), so a folder that is or holds the repository or the home folder is refused
        here, where every caller (indexer, server, training) resolves it."""
        setting_value = self.index.index_dir
        try:
            path = Path(setting_value).expanduser()
        except RuntimeError as error:  # "~" with no home folder to expand it to
            raise ConfigError(f"index.index_dir = {setting_value!r}: {error}") from error
        path = path if path.is_absolute() else repo_root / path
        resolved = path.resolve()
        for what, folder in (("the repository", repo_root.resolve()), ("the home folder", _home())):
            if folder is not None and folder.is_relative_to(resolved):
                where = "is" if folder == resolved else "holds"
                raise ConfigError(
                    f"index.index_dir = {setting_value!r} {where} {what} ({folder}); the index needs a "
                    f"folder of its own, such as the default {DEFAULT_INDEX_DIR!r}"
                )
        return path


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
        try:
            config = config.with_overrides(section, **values)
        except ConfigError as error:
            raise ConfigError(f"{config_file}: {error}") from error
    try:
        config.index_path(repo_root)
    except ConfigError as error:
        raise ConfigError(f"{config_file}: {error}") from error
    return config


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except RuntimeError:  # no HOME and no passwd entry: there is no home folder to protect
        return None
