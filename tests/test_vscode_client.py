"""The VS Code extension (editors/vscode): it compiles, packages as a .vsix, and its Node test drives the
real `repolm serve` with the extension's own initializationOptions (test/server.test.js).

Node and the extension's node_modules come from scripts/setup.sh (`npm ci`); if node_modules is missing
the test runs `npm ci` itself, which needs the npm registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXTENSION = Path(__file__).resolve().parent.parent / "editors" / "vscode"
VENV_BIN = Path(sys.executable).parent  # where the `repolm` console script is installed


def run(command: list[str], timeout: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = (result.stdout + result.stderr)[-8000:]
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{output}"
    return result


@pytest.fixture(scope="module")
def compiled() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/setup.sh")
    if not (EXTENSION / "node_modules" / ".package-lock.json").exists():
        run(["npm", "ci", "--no-audit", "--no-fund"], timeout=900)
    run(["npm", "run", "compile"], timeout=300)
    return EXTENSION / "out"


def test_extension_packages_as_vsix(compiled: Path, tmp_path: Path) -> None:
    vsix = tmp_path / "repolm.vsix"
    run(["npx", "--no-install", "vsce", "package", "--out", str(vsix)], timeout=300)
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
    for name in ("extension/package.json", "extension/out/extension.js", "extension/images/icon.png"):
        assert name in names, sorted(names)
    assert any(name.lower().startswith("extension/license") for name in names), sorted(names)
    assert not any(name.startswith("extension/src/") or name.startswith("extension/test/") for name in names)


def test_node_client_drives_the_real_server(compiled: Path) -> None:
    repolm = VENV_BIN / "repolm"
    assert repolm.exists(), f"{repolm}: the repolm console script is not installed next to {sys.executable}"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "REPOLM_SERVER": str(repolm),
        "HF_HUB_OFFLINE": "1",
    }
    tests = ["test/manifest.test.js", "test/server.test.js"]
    result = run(["node", "--test", "--test-reporter=tap", *tests], timeout=900, env=env)
    assert "# fail 0" in result.stdout, result.stdout[-4000:]
