"""The index on storage that refuses writes: a read-only index still answers searches and `status`, and
a disk that fills up during `repolm index` ends in one line, with the previous generation intact.

Both run the real CLI inside a private mount namespace (`unshare -Urm`, which needs no privileges where
user namespaces are allowed): a read-only bind mount of the index folder, and a small tmpfs as the index
folder. Permission bits would not do: the tests may run as root, whom they do not stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import write_tree

REPO = {
    "shop/pricing.py": (
        "def apply_discount(price, percent):\n"
        '    """Reduce a price by a percentage discount."""\n'
        "    return price * (1 - percent / 100)\n"
    ),
    "docs/guide.md": "# Guide\n\nDiscounts are percentages off the price.\n",
}


def in_namespace(script: str, **paths: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell `script` in a new user and mount namespace; `repolm` in it is this interpreter's."""
    variables = {name.upper(): str(path) for name, path in paths.items()}
    prelude = f'repolm() {{ "{sys.executable}" -m repolm.cli "$@"; }}\nset -u\n'
    return subprocess.run(
        ["unshare", "-Urm", "bash", "-c", prelude + script],
        capture_output=True,
        text=True,
        env={**_environment(), **variables},
    )


def _environment() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "repolm.cli", *args], capture_output=True, text=True, env=_environment()
    )


def test_a_read_only_index_still_serves_search_and_status(tmp_path: Path) -> None:
    write_tree(tmp_path, REPO)
    assert _run("index", str(tmp_path)).returncode == 0
    result = in_namespace(
        'mount --bind "$INDEX" "$INDEX" && mount -o remount,bind,ro "$INDEX" || exit 99\n'
        'touch "$INDEX/probe" 2>/dev/null && exit 98\n'
        'repolm search "percentage discount" --repo "$ROOT" --json -k 1 --mode bm25 || exit 1\n'
        'repolm status "$ROOT" --json || exit 2\n'
        'echo "###"; repolm index "$ROOT"; echo "index exit $?"\n',
        root=tmp_path,
        index=tmp_path / ".repolm",
    )
    assert result.returncode == 0, result.stderr
    search, rest = result.stdout.split("]\n", 1)
    assert json.loads(search + "]")[0]["symbol"] == "shop.pricing.apply_discount"
    status, index_run = rest.split("###")
    assert json.loads(status)["files"] == 2 and json.loads(status)["problems"] == []
    # Writing is refused in one line naming the reason.
    assert "index exit 2" in index_run and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after the embedding model's loading bars
    assert "Read-only file system" in last and "index.index_dir" in last


def test_a_full_disk_while_indexing_ends_in_one_line_and_keeps_the_last_generation(tmp_path: Path) -> None:
    root, logs = tmp_path / "repo", tmp_path / "logs"
    write_tree(root, REPO)
    logs.mkdir()
    result = in_namespace(
        'mkdir "$INDEX" && mount -t tmpfs -o size=1m tmpfs "$INDEX" || exit 99\n'
        'repolm index "$ROOT" >/dev/null 2>&1 || exit 1\n'
        'head -c 2000000 /dev/zero > "$INDEX/filler" 2>/dev/null\n'
        'for i in $(seq 1 60); do printf "def refund_%s(order):\\n    return order.total\\n" $i'
        ' > "$ROOT/shop/refund_$i.py"; done\n'
        'repolm index "$ROOT" 2>"$LOGS/full.err"; echo $? > "$LOGS/full.rc"\n'
        'repolm search "percentage discount" --repo "$ROOT" --json -k 1 --mode bm25'
        ' > "$LOGS/hits.json" || exit 2\n'
        'rm "$INDEX/filler"\n'
        'repolm index "$ROOT" --json > "$LOGS/summary.json" || exit 3\n',
        root=root,
        index=root / ".repolm",
        logs=logs,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert (logs / "full.rc").read_text().strip() == "2"
    (line,) = (logs / "full.err").read_text().strip().splitlines()[-1:]
    assert "Traceback" not in (logs / "full.err").read_text()
    assert line.startswith("repolm: no space left on device while writing the index")
    assert line.endswith("; the previous generation is intact")
    assert json.loads((logs / "hits.json").read_text())[0]["symbol"] == "shop.pricing.apply_discount"
    summary = json.loads((logs / "summary.json").read_text())
    assert (summary["files"], summary["generation"]) == (62, 2)
