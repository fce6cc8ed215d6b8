"""The index folder is repolm's own: a setting can never point it at the repository, the home folder or
someone else's files, and `--rebuild` deletes only what repolm wrote there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_repolm, write_tree

from repolm.config import Config, ConfigError, IndexConfig, load_config
from repolm.indexer.builder import update_index
from repolm.indexer.store import Store
from repolm.server.settings import apply_settings
from repolm.training.registry import Registry

MARKER = "REPOLM_INDEX"
REPO = {
    "app/main.py": "def main():\n    return 1\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    "notes/plan.md": "# Plan\n\nShip it.\n",
}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("setting", [".", "ROOT", "..", "app/..", "~", "HOME/.."])
def test_an_index_dir_holding_the_repository_or_the_home_folder_is_refused(
    tmp_path: Path, setting: str
) -> None:
    root, home = tmp_path / "repo", tmp_path / "home"
    write_tree(home, {".ssh/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\n"})
    value = setting.replace("ROOT", str(root)).replace("HOME", str(home))
    write_tree(root, {**REPO, "repolm.toml": f'[index]\nindex_dir = "{value}"\n'})
    before = _files(tmp_path)
    for args in (["index", str(root)], ["index", str(root), "--rebuild"], ["status", str(root)]):
        result = run_repolm(*args, env={"HOME": str(home), "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "index.index_dir" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert _files(tmp_path) == before


def test_every_caller_of_the_index_folder_gets_the_refusal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_tree(tmp_path, REPO)
    for value in (".", str(tmp_path), "~", "app/../.."):
        config = Config(index=IndexConfig(index_dir=value))
        with pytest.raises(ConfigError, match=r"index\.index_dir"):
            config.index_path(tmp_path)
        with pytest.raises(ConfigError, match=r"index\.index_dir"):
            update_index(tmp_path, config)
    (tmp_path / "repolm.toml").write_text('[index]\nindex_dir = "."\n')
    with pytest.raises(ConfigError, match=r"index\.index_dir"):
        load_config(tmp_path)
    # Editor settings are checked against the workspace too, and a refused one is left out.
    config, problems = apply_settings(Config(), {"index": {"indexDir": "."}}, tmp_path)
    assert config == Config() and len(problems) == 1 and "index.index_dir" in problems[0]


def test_a_folder_repolm_did_not_create_is_refused(tmp_path: Path, embedder) -> None:
    from repolm.assist.engine import Engine

    root, other = tmp_path / "repo", tmp_path / "photos"
    write_tree(root, REPO)
    write_tree(other, {"2024/beach.jpg": b"\xff\xd8\xff", "list.txt": "keep me\n"})
    before = _files(tmp_path)
    for value in (str(other), "notes"):
        (root / "repolm.toml").write_text(f'[index]\nindex_dir = "{value}"\n')
        before["repo/repolm.toml"] = (root / "repolm.toml").read_bytes()
        for args in (["index", str(root)], ["index", str(root), "--rebuild"]):
            result = run_repolm(*args, env={"HF_HUB_OFFLINE": "1"})
            assert result.returncode == 2 and "index.index_dir" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
        config = load_config(root)
        with pytest.raises(ConfigError, match=r"index\.index_dir"):
            Engine(root, config).update_index()
        with pytest.raises(ConfigError, match=r"index\.index_dir"), Registry(config.index_path(root)).lock():
            pass
        assert _files(tmp_path) == before


def test_rebuild_removes_only_what_repolm_wrote(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    config = Config()
    update_index(tmp_path, config, embedder=embedder)
    index_dir = tmp_path / ".repolm"
    assert (index_dir / MARKER).is_file()  # written when repolm created the folder
    kept = {
        "notes.txt": "mine\n",
        "adapters/raft-1/adapter_config.json": "{}\n",
        "adapters/ACTIVE": "raft-1\n",
        "eval/eval.json": "{}\n",
    }
    write_tree(index_dir, kept)
    summary = update_index(tmp_path, config, embedder=embedder, rebuild=True)
    assert (summary.generation, summary.added) == (1, 2)
    for name, text in kept.items():
        assert (index_dir / name).read_text() == text, name
    assert (index_dir / MARKER).is_file()
    assert sorted(p.name for p in index_dir.glob("lexical-*")) == ["lexical-1"]

    # An index of an earlier format is set aside and rebuilt: that too leaves the rest alone.
    store = Store.open(index_dir)
    store.db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    store.close()
    summary = update_index(tmp_path, config, embedder=embedder)
    assert (summary.generation, summary.added, summary.embedded) == (1, 2, 0)
    for name, text in kept.items():
        assert (index_dir / name).read_text() == text, name


def test_an_index_folder_from_an_earlier_repolm_is_adopted(tmp_path: Path, embedder) -> None:
    write_tree(tmp_path, REPO)
    update_index(tmp_path, Config(), embedder=embedder)
    index_dir = tmp_path / ".repolm"
    (index_dir / MARKER).unlink()  # as written before repolm marked its folders
    (index_dir / "notes.txt").write_text("mine\n")
    assert update_index(tmp_path, Config(), embedder=embedder).unchanged == 2
    assert (index_dir / MARKER).is_file() and (index_dir / "notes.txt").is_file()
    # An empty folder is taken too (made ready for repolm by hand, or by a deployment).
    empty = tmp_path / "cache" / "index"
    empty.mkdir(parents=True)
    config = Config(index=IndexConfig(index_dir=str(empty)))
    assert update_index(tmp_path, config, embedder=embedder).files == 2
    assert (empty / MARKER).is_file()
    assert os.listdir(tmp_path / "cache") == ["index"]
