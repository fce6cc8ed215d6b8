"""The `repolm` command line as users and scripts call it: real subprocesses, real index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import write_tree

REPO = {
    "geometry/shapes.py": (
        "class Circle:\n"
        '    """A circle given by its radius."""\n'
        "\n"
        "    def area(self):\n"
        "        return 3.14159 * self.radius ** 2\n"
    ),
    "README.md": "# Geometry\n\nShapes and their areas.\n",
    "logo.py": b"\x89PNG\r\n\x1a\n\x00\x00",
}


def repolm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repolm.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_index_search_queries_and_status(tmp_path: Path) -> None:
    write_tree(tmp_path, REPO)
    indexed = repolm("index", str(tmp_path), "--json")
    assert indexed.returncode == 0, indexed.stderr
    summary = json.loads(indexed.stdout)
    assert summary["files"] == 2 and summary["skipped"] == {"binary": 1}

    hits = json.loads(
        repolm("search", "circle area radius", "--repo", str(tmp_path), "--json", "-k", "2").stdout
    )
    assert hits[0]["path"] == "geometry/shapes.py"
    assert set(hits[0]) >= {"path", "start_line", "end_line", "symbol", "kind", "score"}
    # The class (whose docstring names the circle and its radius) and its method, in either order.
    assert {(h["symbol"], h["start_line"], h["end_line"]) for h in hits} == {
        ("geometry.shapes.Circle", 1, 5),
        ("geometry.shapes.Circle.area", 4, 5),
    }

    queries = tmp_path / "queries.txt"
    queries.write_text("shapes and their areas\n\ncircle radius\n")
    lines = repolm(
        "search", "--queries", str(queries), "--repo", str(tmp_path), "--mode", "bm25"
    ).stdout.splitlines()
    assert len(lines) == 3 and json.loads(lines[1]) == []
    assert json.loads(lines[0])[0]["path"] == "README.md"

    status = json.loads(repolm("status", str(tmp_path), "--json").stdout)
    assert (status["files"], status["generation"], status["skipped"]) == (2, 1, {"binary": 1})
    vectors = summary["embedded"] + summary["summaries_embedded"]
    assert status["vectors_cached"] == vectors > status["chunks"]  # chunks and docstrings
    assert status["skipped_examples"]["binary"] == ["logo.py"]
    assert status["languages"] == {"python": 1, "markdown": 1}


def test_clear_errors(tmp_path: Path) -> None:
    missing = repolm("index", str(tmp_path / "nope"))
    assert (
        missing.returncode == 2 and "no such folder" in missing.stderr and "Traceback" not in missing.stderr
    )
    no_index = repolm("search", "anything", "--repo", str(tmp_path))
    assert no_index.returncode == 2 and "run `repolm index` first" in no_index.stderr
    (tmp_path / ".repolm").mkdir()
    (tmp_path / ".repolm" / "index.sqlite").write_bytes(b"garbage" * 500)
    corrupt = repolm("status", str(tmp_path))
    assert corrupt.returncode == 2 and "is damaged (file is not a database)" in corrupt.stderr
    (tmp_path / "repolm.toml").write_text("[index]\nmax_file_bytes = 'big'\n")
    bad_config = repolm("index", str(tmp_path))
    assert bad_config.returncode == 2
    assert "index.max_file_bytes = 'big': must be an integer" in bad_config.stderr


def test_status_counts_symlinks_out_of_the_repository(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "etc"
    write_tree(outside, {"passwd.txt": "root:x:0:0:root:/root:/bin/bash\n", "hosts.md": "# hosts\n"})
    write_tree(root, REPO)
    (root / "passwd.txt").symlink_to(outside / "passwd.txt")
    (root / "etc_dir").symlink_to(outside)
    assert repolm("index", str(root)).returncode == 0
    status = json.loads(repolm("status", str(root), "--json").stdout)
    assert status["files"] == 2
    assert status["skipped"]["symlink outside the repository"] == 2
    hits = repolm("search", "root bash passwd hosts", "--repo", str(root), "--json", "--mode", "bm25").stdout
    assert "passwd" not in hits and "hosts" not in hits


def test_complete_and_explain_refuse_files_outside_the_repository(tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", REPO)
    secret = write_tree(tmp_path / "outside", {"secret.py": "TOKEN = 'x'\nvalue = TOK\n"}) / "secret.py"
    (repo / "geometry" / "linked.py").symlink_to(secret)
    targets = [
        "/etc/passwd:5:12",
        f"{secret}:2:11",
        f"{repo}/../outside/secret.py:2:11",
        f"{repo}/geometry/linked.py:2:11",
    ]
    for target in targets:
        for command in (["complete", target], ["explain", target, "--card-only"]):
            result = repolm(*command, "--repo", str(repo))
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            assert "is outside the workspace" in result.stderr, (command, result.stderr)
            assert result.stderr.count("\n") == 1 and not result.stdout, (command, result.stderr)
    # Without --repo, the root found from the file (here: the folder holding repolm.toml) bounds it.
    (repo / "repolm.toml").write_text("")
    found = repolm("complete", "geometry/linked.py:2:11", cwd=repo)
    assert found.returncode == 2 and f"outside the workspace ({repo})" in found.stderr, found.stderr
