"""Where benchmark figures go: a JSON file (under bench/results/ by default), also printed for the log."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def command() -> str:
    """The command line that ran this benchmark, as typed from the repository root."""
    return " ".join(["python", *sys.argv])


def write_report(report: dict[str, object], out: Path) -> None:
    """Write `report` with the command and machine first (docs/PERFORMANCE.md quotes each figure with them);
    values the script set itself win."""
    text = json.dumps({"command": command(), "machine": machine(), **report}, indent=2)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"wrote {out}")
