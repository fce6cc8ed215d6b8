"""Which code is held out for evaluation: the one place that decides it, for evaluation and training alike.

Two splits:

- **file** (default): a stable 20% of the files, chosen by a hash of the repository-relative path, so the
  same file stays held out across runs, machines and Python versions (the builtin `hash` is salted per
  process and would not). The RAFT dataset builder must call `is_held_out` and skip these files whole.
- **commit:REV**: the lines added since commit REV (`git diff REV`, the working tree included, because
  that is what the index holds): "the new code written after the last retrain". Targets come only from
  those lines; the model may have seen older lines of the same files, never these.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FRACTION = 0.2
# Part of the hash input: changing it reshuffles the split (and invalidates every trained adapter's
# claim of never having seen the evaluation files), so it only changes with a new split version.
SPLIT_SALT = "repolm-eval-split-v1"

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


class SplitError(ValueError):
    """An unusable --split value or a history that git cannot diff."""


def split_bucket(path: str) -> float:
    """A stable number in [0, 1) for a repository-relative POSIX path."""
    digest = hashlib.blake2b(f"{SPLIT_SALT}\0{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_held_out(path: str, fraction: float = DEFAULT_FRACTION) -> bool:
    """True for files reserved for evaluation; the training dataset builder must skip exactly these."""
    return split_bucket(path) < fraction


def training_files(paths: Iterable[str], fraction: float = DEFAULT_FRACTION) -> list[str]:
    """The files training may use: everything the file split does not hold out."""
    return [path for path in paths if not is_held_out(path, fraction)]


@dataclass(frozen=True)
class EvalSplit:
    """What evaluation may take targets from.

    `added_lines` is None for the file split; for the commit split it maps each path to the 1-based line
    numbers (in the current file) added since `rev`.
    """

    kind: str  # "file" | "commit"
    fraction: float = DEFAULT_FRACTION
    rev: str = ""
    added_lines: dict[str, frozenset[int]] | None = field(default=None, repr=False)

    def allows(self, path: str, line: int) -> bool:
        """Whether a target may sit at `line` (1-based) of `path`."""
        if self.added_lines is None:
            return is_held_out(path, self.fraction)
        return line in self.added_lines.get(path, frozenset())

    def files(self, paths: Iterable[str]) -> list[str]:
        """The files that can hold targets at all."""
        if self.added_lines is None:
            return [path for path in paths if is_held_out(path, self.fraction)]
        return [path for path in paths if self.added_lines.get(path)]

    def describe(self) -> dict[str, object]:
        if self.added_lines is None:
            return {"kind": "file", "fraction": self.fraction, "salt": SPLIT_SALT}
        return {"kind": "commit", "rev": self.rev}


def git_commit(root: Path) -> str | None:
    """The commit checked out at `root`, or None outside git (evaluations and adapters record it)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def parse_split(spec: str, root: Path) -> EvalSplit:
    """`file`, `file:FRACTION` or `commit:REV`."""
    kind, _, value = spec.partition(":")
    if kind == "file":
        try:
            fraction = float(value) if value else DEFAULT_FRACTION
        except ValueError as error:
            raise SplitError(f"--split file:FRACTION needs a number, got {value!r}") from error
        if not 0 < fraction < 1:
            raise SplitError("the held-out fraction must be between 0 and 1")
        return EvalSplit("file", fraction)
    if kind == "commit" and value:
        return EvalSplit("commit", rev=value, added_lines=added_lines(root, value))
    raise SplitError(f"--split takes file, file:FRACTION or commit:REV, not {spec!r}")


def added_lines(root: Path, rev: str) -> dict[str, frozenset[int]]:
    """Lines added since `rev` in each file, numbered as in the working tree (`git diff -U0 REV`)."""
    command = ["git", "-C", str(root), "diff", "--unified=0", "--no-color", "--no-ext-diff", rev, "--"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise SplitError(f"cannot diff against {rev!r}: {detail.strip()}") from error
    return parse_diff(done.stdout)


def parse_diff(diff: str) -> dict[str, frozenset[int]]:
    """Added line numbers per new-side path from a unified diff with zero context lines."""
    found: dict[str, set[int]] = {}
    path: str | None = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            name = line[4:].strip()
            path = name[2:] if name.startswith("b/") else None  # "+++ /dev/null": a deleted file
        elif path is not None and (hunk := _HUNK.match(line)):
            start, count = int(hunk.group(1)), int(hunk.group(2) or 1)
            found.setdefault(path, set()).update(range(start, start + count))
    return {path: frozenset(lines) for path, lines in found.items() if lines}
