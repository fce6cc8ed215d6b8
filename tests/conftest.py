"""Shared fixtures: real models loaded once per test session, fixture repositories written per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder():
    from repolm.indexer.dense import Embedder

    return Embedder()


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def run_repolm(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """The `repolm` command in a subprocess, as users and scripts run it."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "repolm.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
