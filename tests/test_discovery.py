"""File discovery: ignore rules, size and type limits, symlink loops, and reasons for every skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conftest import write_tree

from repolm.config import IndexConfig
from repolm.indexer.discovery import (
    SKIP_BINARY,
    SKIP_EXCLUDED,
    SKIP_IGNORED,
    SKIP_SYMLINK_LOOP,
    SKIP_SYMLINK_OUTSIDE,
    SKIP_TOO_LARGE,
    SKIP_UNREADABLE,
    SKIP_UNSUPPORTED,
    SKIP_VENDORED,
    SourceText,
    discover,
    read_source,
)


def test_gitignore_nested_and_negated(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            ".gitignore": "*.log\nout/\nsecret_*.py\n",
            "app/.gitignore": "local.py\n!keep.log\n",
            "app/main.py": "x = 1\n",
            "app/local.py": "x = 2\n",
            "app/keep.log": "kept\n",
            "app/debug.log": "dropped\n",
            "out/gen.py": "x = 3\n",
            "lib/out/also.py": "x = 4\n",
            "secret_config.py": "x = 5\n",
            "README.md": "# Hi\n",
        },
    )
    found = discover(tmp_path, IndexConfig())
    paths = [f.path for f in found.files]
    assert paths == ["README.md", "app/main.py"]  # keep.log is re-included but .log is no supported type
    assert found.skipped[SKIP_IGNORED] == 5  # local.py, debug.log, out/, lib/out/, secret_config.py
    assert found.skipped[SKIP_UNSUPPORTED] == 3  # both .gitignore files and keep.log
    assert "app/keep.log" in found.examples[SKIP_UNSUPPORTED]


def test_include_exclude_globs_and_vendored(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "src/a.py": "a = 1\n",
            "src/gen/b.py": "b = 1\n",
            "tests/t.py": "t = 1\n",
            "node_modules/x/index.js": "var x;\n",
            "vendor/lib.go": "package lib\n",
        },
    )
    config = IndexConfig(include=("src/",), exclude=("src/gen/",))
    found = discover(tmp_path, config)
    assert [f.path for f in found.files] == ["src/a.py"]
    assert found.skipped[SKIP_VENDORED] == 2
    assert found.skipped[SKIP_EXCLUDED] == 2  # src/gen (exclude) and tests/t.py (not included)


def test_size_limit_and_symlink_loop(tmp_path: Path) -> None:
    write_tree(tmp_path, {"big.py": "x = 1\n" * 400, "small.py": "y = 2\n", "pkg/m.py": "z = 3\n"})
    os.symlink(tmp_path, tmp_path / "pkg" / "loop")
    found = discover(tmp_path, IndexConfig(max_file_bytes=1000))
    assert [f.path for f in found.files] == ["pkg/m.py", "small.py"]
    assert found.skipped[SKIP_TOO_LARGE] == 1
    assert found.skipped[SKIP_SYMLINK_LOOP] == 1


def test_read_source_binary_invalid_utf8_and_limits(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"bin.py": b"\x7fELF\x00\x00\x01", "latin.py": b"name = '\xe9t\xe9'\n", "ok.py": "s = 'é'\n"},
    )
    assert read_source(tmp_path, "bin.py", 1000) == SKIP_BINARY
    assert read_source(tmp_path, "ok.py", 3) == SKIP_TOO_LARGE
    latin = read_source(tmp_path, "latin.py", 1000)
    assert isinstance(latin, SourceText) and latin.replaced_invalid_utf8 and "\ufffd" in latin.text
    assert read_source(tmp_path, "missing.py", 1000) == "unreadable"


def test_symlinks_leading_out_of_the_repository_are_never_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    write_tree(outside, {"passwd.txt": "root:x:0:0:root:/root:/bin/bash\n", "etc/hosts.py": "HOST = 1\n"})
    write_tree(root, {"src/app.py": "a = 1\n", "lib/util.py": "u = 1\n"})
    os.symlink(outside / "passwd.txt", root / "passwd.txt")
    os.symlink(outside / "etc", root / "etc_dir")
    os.symlink("../../outside/etc/hosts.py", root / "src" / "relative.py")  # relative, still outside
    os.symlink(outside / "gone.py", root / "dangling_out.py")
    os.symlink(root / "lib", root / "src" / "lib_link")  # inside: followed
    os.symlink("app.py", root / "src" / "alias.py")
    found = discover(root, IndexConfig())
    assert [f.path for f in found.files] == [
        "lib/util.py",
        "src/alias.py",
        "src/app.py",
        "src/lib_link/util.py",
    ]
    assert found.skipped[SKIP_SYMLINK_OUTSIDE] == 4
    assert sorted(found.examples[SKIP_SYMLINK_OUTSIDE]) == [
        "dangling_out.py",
        "etc_dir",
        "passwd.txt",
        "src/relative.py",
    ]


def test_a_file_swapped_for_an_outside_symlink_after_discovery_is_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    write_tree(outside, {"secret.py": "TOKEN = 'outside'\n"})
    write_tree(root, {"app.py": "a = 1\n", "pkg/mod.py": "m = 1\n"})
    found = discover(root, IndexConfig())
    assert [f.path for f in found.files] == ["app.py", "pkg/mod.py"]
    (root / "app.py").unlink()
    os.symlink(outside / "secret.py", root / "app.py")
    shutil.rmtree(root / "pkg")
    os.symlink(outside, root / "pkg")
    os.symlink(outside / "secret.py", outside / "mod.py")
    for path in ("app.py", "pkg/mod.py"):
        assert read_source(root, path, 1000) == SKIP_SYMLINK_OUTSIDE
    os.mkfifo(root / "fifo.py")  # swapped for a pipe: not opened for a read that would block
    assert read_source(root, "fifo.py", 1000) == SKIP_UNREADABLE
