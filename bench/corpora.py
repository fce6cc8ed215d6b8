"""Real repositories for benchmarks: PyPI sdists downloaded at run time and unpacked once.

We did not write these projects, which is the point: figures measured on them say how repolm does on
code it has never seen. Each corpus is pinned to an exact version so that figures are reproducible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
CORPORA = {
    "requests": "requests==2.32.3",
    "django": "Django==5.1.4",
    # The RAFT benchmark's repositories: none of them was used to tune a recipe.
    "httpx": "httpx==0.28.1",
    "jinja2": "jinja2==3.1.4",
    "werkzeug": "werkzeug==3.1.3",
}
# Benchmarks run the CLI as a user would, and nothing may reach a model hub.
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}


def repolm(*arguments: str, allowed: tuple[int, ...] = (0,)) -> str:
    """Run `repolm ARGUMENTS` in a child process; its standard output. An exit status outside
    `allowed` raises (`retrain` exits 3 when the gate keeps the incumbent)."""
    command = [sys.executable, "-m", "repolm.cli", *arguments]
    done = subprocess.run(command, env=OFFLINE, stdout=subprocess.PIPE, text=True)
    if done.returncode not in allowed:
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout)
    return done.stdout


def corpus(name: str) -> Path:
    """The unpacked source tree of a pinned sdist (downloaded with pip on first use)."""
    requirement = CORPORA[name]
    target = CACHE / requirement.replace("==", "-")
    if (target / ".complete").exists():
        return _single_child(target)
    shutil.rmtree(target, ignore_errors=True)
    downloads = CACHE / "downloads"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(downloads),
            requirement,
        ],
        check=True,
    )
    stem = requirement.split("==")[0].lower()
    archive = next(p for p in downloads.glob("*.tar.gz") if p.name.lower().startswith(stem))
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    (target / ".complete").touch()
    return _single_child(target)


def fresh_copy(name: str, destination: Path) -> Path:
    """A private copy of a corpus that a benchmark may edit and index."""
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(corpus(name), destination, symlinks=True)
    return destination


def indexed_copy(name: str, destination: Path) -> Path:
    """A fresh copy of a corpus, indexed by `repolm index` as a user would run it."""
    root = fresh_copy(name, destination)
    repolm("index", str(root), "--json")
    return root


def _single_child(folder: Path) -> Path:
    children = [p for p in folder.iterdir() if p.is_dir()]
    return children[0] if len(children) == 1 else folder
