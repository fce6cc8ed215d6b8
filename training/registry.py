"""The adapter registry: trained LoRA adapters under the index directory, one of them active.

Layout (under the index dir, `.repolm/` by default)::

    adapters/
      <name>/             a standard PEFT adapter folder, plus manifest.json, loss curve, eval.json
      ACTIVE              the active adapter's name (one line; absent or empty: the plain base model)
      active -> <name>    a symlink to the active folder, for `[serve] adapter = ".repolm/adapters/active"`
      HISTORY             previously active names, oldest first ("" stands for the plain base model)
      retrain.lock        held (a file lock) while a retrain runs
      retrievers/         fine-tuned embedding models (sentence-transformers folders), same layout

ACTIVE and the `active` symlink are replaced atomically (write beside, then rename), so a server
watching either never reads a half-written state.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from repolm.config import ACTIVE_LINK, ADAPTERS, RETRIEVER_MODEL, RETRIEVERS
from repolm.indexer.index_dir import claim_index_dir

ACTIVE_FILE = "ACTIVE"
HISTORY_FILE = "HISTORY"
LOCK_FILE = "retrain.lock"
MANIFEST = "manifest.json"
RESERVED = frozenset({ACTIVE_FILE, ACTIVE_LINK, HISTORY_FILE, LOCK_FILE, RETRIEVERS})
ADAPTER_MARKER = "adapter_config.json"  # the file that makes a folder an adapter (PEFT writes it)
RETRIEVER_MARKER = f"{RETRIEVER_MODEL}/modules.json"  # ... a retriever (see RETRIEVER_MODEL)


class RegistryError(RuntimeError):
    """An unknown adapter, a folder that is not an adapter, or nothing to roll back to."""


class BusyError(RuntimeError):
    """Another retrain holds the lock."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class Manifest:
    name: str
    base_model: str
    mode: str  # raft | plain
    index_generation: int
    git_commit: str | None
    dataset_hash: str
    created: str = field(default_factory=_now)
    profile: str = ""
    eval_metrics: dict[str, Any] = field(default_factory=dict)  # filled after evaluation
    gate: dict[str, Any] = field(default_factory=dict)  # the promotion decision, with its reason
    train: dict[str, Any] = field(default_factory=dict)  # TrainResult summary
    dataset: dict[str, Any] = field(default_factory=dict)  # DatasetStats

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetrieverManifest:
    """What a fine-tuned retriever was trained from and how it did (`repolm train-retriever`)."""

    name: str
    base_model: str  # the folder it was fine-tuned from
    vector_key: str  # its embedder's key in the index's vector cache (Embedder.name)
    index_generation: int
    git_commit: str | None
    pairs_hash: str
    created: str = field(default_factory=_now)
    pairs: dict[str, Any] = field(default_factory=dict)  # PairStats
    train: dict[str, Any] = field(default_factory=dict)  # steps, seconds, loss
    eval_metrics: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Registry:
    """Adapters by default; `Registry.retrievers` gives the fine-tuned retrievers' registry."""

    def __init__(self, index_dir: Path, area: tuple[str, ...] = (ADAPTERS,), marker: str = ADAPTER_MARKER):
        self.index_dir = index_dir
        self.root = index_dir.joinpath(*area)
        self.marker = marker

    @classmethod
    def retrievers(cls, index_dir: Path) -> Registry:
        return cls(index_dir, (ADAPTERS, RETRIEVERS), RETRIEVER_MARKER)

    def path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith(".") or name in RESERVED:
            raise RegistryError(f"{name!r} is not a valid adapter name")
        return self.root / name

    def create(self, name: str) -> Path:
        """The folder for a new adapter `name`, made (with the registry) in the index folder."""
        self._make_root()
        folder = self.path(name)
        folder.mkdir(exist_ok=True)
        return folder

    def _make_root(self) -> None:
        # The registry lives in the index folder, which only repolm's own folders may be (ConfigError).
        claim_index_dir(self.index_dir)
        self.root.mkdir(parents=True, exist_ok=True)

    def new_name(self, mode: str) -> str:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        name, serial = f"{mode}-{stamp}", 1
        while (self.root / name).exists():
            serial += 1
            name = f"{mode}-{stamp}-{serial}"
        return name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.is_symlink() and (p / self.marker).is_file()
        )

    def manifest(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.path(name) / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_manifest(self, manifest: Manifest | RetrieverManifest) -> None:
        atomic_write(self.path(manifest.name) / MANIFEST, json.dumps(manifest.to_json(), indent=2) + "\n")

    def active(self) -> str | None:
        try:
            name = (self.root / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return name or None

    def active_path(self) -> Path | None:
        name = self.active()
        return self.path(name) if name else None

    def _history(self) -> list[str]:
        try:
            return (self.root / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
        except OSError:
            return []

    def _set_active(self, name: str | None) -> None:
        self._make_root()
        link = self.root / ACTIVE_LINK
        if name:
            tmp = self.root / f".{ACTIVE_LINK}.tmp-{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(name, target_is_directory=True)  # relative: the index dir may move
            os.replace(tmp, link)
        else:
            link.unlink(missing_ok=True)
        atomic_write(self.root / ACTIVE_FILE, (name or "") + "\n")

    def require(self, name: str | None) -> None:
        """Raises RegistryError unless `name` is an adapter here (None, the base model, always is)."""
        if name is not None and name not in self.names():
            raise RegistryError(f"no adapter named {name!r} in {self.root}")

    def activate(self, name: str | None) -> None:
        """Make `name` (None: the plain base model) active; the previous one goes on the history."""
        self.require(name)
        previous = self.active()
        if previous == name:
            return
        atomic_write(self.root / HISTORY_FILE, "\n".join([*self._history(), previous or ""]) + "\n")
        self._set_active(name)

    def _rollback_history(self) -> list[str]:
        """The history without adapters deleted since; its last entry is what a rollback activates."""
        history = self._history()
        names = set(self.names())
        while history and history[-1] and history[-1] not in names:
            history.pop()
        if not history:
            raise RegistryError("nothing to roll back to: no adapter was active before this one")
        return history

    def rollback_target(self) -> str | None:
        """What `rollback` would activate (None: the base model), changing nothing."""
        return self._rollback_history()[-1] or None

    def rollback(self) -> str | None:
        """Re-activate the previously active adapter (None: the base model); returns it."""
        history = self._rollback_history()
        previous = history.pop()
        atomic_write(self.root / HISTORY_FILE, "".join(f"{h}\n" for h in history))
        self._set_active(previous or None)
        return previous or None

    def listing(self) -> list[dict[str, Any]]:
        active = self.active()
        rows = []
        for name in self.names():
            manifest = self.manifest(name)
            metrics = manifest.get("eval_metrics", {})
            rows.append(
                {
                    "name": name,
                    "active": name == active,
                    "mode": manifest.get("mode"),
                    "created": manifest.get("created"),
                    "index_generation": manifest.get("index_generation"),
                    "hybrid_edit_similarity": metrics.get("hybrid_edit_similarity"),
                    "hybrid_exact_match": metrics.get("hybrid_exact_match"),
                    "promoted": manifest.get("gate", {}).get("promote"),
                    "path": str(self.path(name)),
                }
            )
        return rows

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Held for a whole retrain; a second one fails at once (cron must not pile runs up)."""
        self._make_root()
        lock = FileLock(self.root / LOCK_FILE)
        try:
            lock.acquire(blocking=False)
        except Timeout as error:
            raise BusyError(f"another retrain is running ({self.root / LOCK_FILE} is locked)") from error
        try:
            yield
        finally:
            lock.release()
