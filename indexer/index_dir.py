"""The index folder is repolm's own: made ready before anything writes to it, and only repolm's own
files are ever deleted from it.

`--rebuild` and setting an outdated index aside delete files, so repolm writes only in a folder it
created (it leaves a marker file there), an empty one, or one that already holds a repolm index (an
earlier repolm's, adopted and marked). Any other folder is refused: a setting pointing at a photo
library or a source tree must not be emptied. `Config.index_path` has already refused a folder that
is or holds the repository or the home folder, before any of this runs.

What survives `--rebuild`: everything but the store files below. Trained adapters (`adapters/`, see
repolm.training.registry) and evaluation reports (`eval/`) are expensive to make again and do not
depend on the index's files, so they stay, as does anything else a user put there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from repolm.config import ConfigError

from .lexical import LEXICAL_PREFIX
from .store import DB_COMPANIONS, DB_NAME, OUTDATED_NAME, is_index_database

MARKER = "REPOLM_INDEX"
_MARKER_TEXT = (
    "This folder holds a repolm index. `repolm index --rebuild` deletes and rewrites the files repolm\n"
    f"stores here ({DB_NAME}*, {OUTDATED_NAME}*, {LEXICAL_PREFIX}<N>/) and leaves everything else alone.\n"
)


def claim_index_dir(index_dir: Path) -> None:
    """Make `index_dir` ready for repolm to write in, creating it if needed; raises ConfigError for a
    folder that holds files repolm did not write."""
    try:
        index_dir.mkdir(parents=True)
    except FileExistsError:
        if not index_dir.is_dir():
            raise ConfigError(f"index.index_dir: {index_dir} is not a folder") from None
        if (index_dir / MARKER).is_file():
            return
        if any(index_dir.iterdir()) and not is_index_database(index_dir / DB_NAME):
            raise ConfigError(
                f"index.index_dir: {index_dir} holds files repolm did not write (it has neither the "
                f"{MARKER} marker nor a repolm index); repolm deletes files in its index folder, so it "
                "uses only a new or empty folder or its own. Choose another index_dir"
            ) from None
    (index_dir / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")


def is_store_file(name: str) -> bool:
    """Whether `name`, in the index folder, is one of the index's own store files or folders."""
    for suffix in DB_COMPANIONS:
        if name in (DB_NAME + suffix, OUTDATED_NAME + suffix):
            return True
    generation = name.removeprefix(LEXICAL_PREFIX)
    return generation != name and generation.isdigit()


def remove_store_files(index_dir: Path, keep: str = "") -> None:
    """Delete the index's store files from `index_dir` (but those whose names start with `keep`),
    and nothing else."""
    for entry in os.scandir(index_dir):
        if not is_store_file(entry.name) or (keep and entry.name.startswith(keep)):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
