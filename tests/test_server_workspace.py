"""Which files a request may name: `Workspace` directly, then a real server with several workspace folders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import write_tree
from lsp_peer import SERVE, StdioPeer

from repolm.assist.workspace import OutsideWorkspaceError, Workspace


def test_paths_are_judged_where_they_lead(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {"app/main.py": "x = 1\n"})
    other = write_tree(tmp_path / "other", {"lib.py": "y = 2\n"})
    secret = write_tree(tmp_path / "outside", {"secret.py": "z = 3\n"}) / "secret.py"
    (root / "app" / "out.py").symlink_to(secret)
    (root / "app" / "in.py").symlink_to(root / "app" / "main.py")
    (root / "loop.py").symlink_to(root / "loop.py")
    workspace = Workspace(root)
    assert workspace.relative(root / "app" / "main.py") == "app/main.py"
    assert workspace.relative(root / "app" / ".." / "app" / "in.py") == "app/main.py"
    assert workspace.inside(root / "app" / "new.py") == root.resolve() / "app" / "new.py"  # not saved yet
    for path in (secret, root / ".." / "outside" / "secret.py", root / "app" / "out.py", Path("/etc/passwd")):
        with pytest.raises(OutsideWorkspaceError, match="is outside the workspace"):
            workspace.inside(path)
    with pytest.raises(OutsideWorkspaceError, match=re.escape(f"which leads to {secret.resolve()}")):
        workspace.inside(root / "app" / "out.py")
    with pytest.raises(OutsideWorkspaceError):
        workspace.inside(root / "loop.py")
    with pytest.raises(OutsideWorkspaceError):
        workspace.inside(other / "lib.py")
    # Another workspace folder is inside too; its files are named by absolute path (no index has them).
    both = Workspace(root, [other, root])
    assert both.folders == (root.resolve(), other.resolve())
    assert both.relative(other / "lib.py") == (other / "lib.py").resolve().as_posix()
    where = f"outside the workspace ({root.resolve()}, {other.resolve()})"
    with pytest.raises(OutsideWorkspaceError, match=re.escape(where)):
        both.inside(secret)


def test_the_server_answers_in_every_workspace_folder_and_only_there(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {"app.py": "x = 1\n"})
    other = write_tree(tmp_path / "other", {"lib.py": "y = 2\n"})
    peer = StdioPeer(SERVE, root)
    folders = [{"uri": folder.as_uri(), "name": folder.name} for folder in (root, other)]
    params = {"processId": None, "rootUri": root.as_uri(), "capabilities": {}, "workspaceFolders": folders}
    try:
        assert "capabilities" in peer.request(0, "initialize", params)["result"]

        def hover(id_: int, file: Path) -> str:
            where = {"textDocument": {"uri": file.as_uri()}, "position": {"line": 0, "character": 0}}
            return peer.request(id_, "textDocument/hover", where, timeout=60)["error"]["message"]

        # Without `initialized` there is no index: reaching that point means the document was accepted.
        assert "no repolm index" in hover(1, other / "lib.py")
        assert "outside the workspace" in hover(2, tmp_path / "elsewhere.py")
        removed = {"event": {"added": [], "removed": [folders[1]]}}
        peer.send({"method": "workspace/didChangeWorkspaceFolders", "params": removed})
        assert "outside the workspace" in hover(3, other / "lib.py")
        assert "no repolm index" in hover(4, root / "app.py")  # the root stays: it is what the server indexes
    finally:
        peer.close()
