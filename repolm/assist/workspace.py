"""Which files repolm may read for a request: those inside the workspace, and no others.

An editor (or a command line) names files by path; a path can lead anywhere (`/etc/passwd`, `../x`, a
symlink in the repository pointing out of it). Every file a request names is resolved and checked here
before it is read, by the language server and the CLI alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class OutsideWorkspaceError(ValueError):
    """A file outside every folder of the workspace."""


class Workspace:
    """The indexed root and, in an editor, its other workspace folders (compared resolved)."""

    def __init__(self, root: Path, folders: Iterable[Path] = ()) -> None:
        self.root = root.resolve()
        others = (folder.resolve() for folder in folders)
        self.folders: tuple[Path, ...] = tuple(dict.fromkeys((self.root, *others)))

    def inside(self, path: Path) -> Path:
        """`path` with `..` and symlinks resolved, provided that lies inside one of the folders."""
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop, an unreadable folder
            raise OutsideWorkspaceError(f"{path}: cannot tell where it leads ({error})") from error
        if any(resolved.is_relative_to(folder) for folder in self.folders):
            return resolved
        shown = str(path) if resolved == path else f"{path} (which leads to {resolved})"
        folders = ", ".join(str(folder) for folder in self.folders)
        raise OutsideWorkspaceError(
            f"{shown} is outside the workspace ({folders}); repolm only reads files inside it"
        )

    def relative(self, path: Path) -> str:
        """The root-relative POSIX path of a workspace file, as the index names files. A file of another
        workspace folder keeps its absolute path: it is in no index, only its buffer is used."""
        resolved = self.inside(path)
        if resolved.is_relative_to(self.root):
            return resolved.relative_to(self.root).as_posix()
        return resolved.as_posix()
