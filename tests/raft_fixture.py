"""A small Python repository for the training tests: helpers in some files, code that uses them in others.

With the evaluation split's salt, `lib/*.py` and `app/cli.py` are training files and `app/jobs.py` is
held out (asserted by the tests, so a changed split shows up as a clear failure).
"""

from __future__ import annotations

from pathlib import Path

TRAINING_FILES = ("lib/mathutil.py", "lib/report.py", "lib/text.py", "lib/store.py", "app/cli.py")
HELD_OUT_FILE = "app/jobs.py"

MATHUTIL = '''"""Math helpers."""


def add(a, b):
    """Add two numbers."""
    return a + b


def scale(values, factor=2):
    """Multiply every value by a factor."""
    return [v * factor for v in values]


def clamp(value, low, high):
    """Keep a value between two bounds."""
    return max(low, min(high, value))


class Counter:
    """Counts things by name."""

    def __init__(self):
        self.counts = {}

    def bump(self, name, step=1):
        """Increase the count of a name."""
        self.counts[name] = self.counts.get(name, 0) + step
        return self.counts[name]
'''

TEXT = '''"""Text helpers."""


def slugify(title, separator="-"):
    """Lower-case words joined by a separator."""
    words = title.lower().split()
    return separator.join(words)


def shout(message):
    """The message in capitals with an exclamation mark."""
    return message.upper() + "!"
'''

STORE = '''"""A tiny key-value store."""

API_TOKEN = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
BACKUP_URL = "postgresql://admin:S3cr3t!Pw0rd@db.internal/backup"
# AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY


class Store:
    """Keeps values by key."""

    def __init__(self, path):
        self.path = path
        self.items = {}

    def put(self, key, value):
        """Remember a value."""
        self.items[key] = value
        return len(self.items)

    def get(self, key, default=None):
        """The value for a key."""
        return self.items.get(key, default)
'''


def _report() -> str:
    parts = [
        '"""Reports built from the helpers."""\n\nfrom lib.mathutil import Counter, add, clamp, scale\n'
        "from lib.store import Store\nfrom lib.text import shout, slugify\n"
    ]
    for n in range(24):
        parts.append(
            f'''

def report_{n}(values, title, names):
    """Report number {n}."""
    doubled = scale(values, factor={n + 2})
    total = add(sum(doubled), {n})
    bounded = clamp(total, {n}, {100 + n})
    label = slugify(title + " {n}", separator="_")
    counter = Counter()
    for name in names:
        counter.bump(name, step={n + 1})
    store = Store("report-{n}.db")
    store.put(label, bounded)
    return shout(label) if bounded > {50 + n} else store.get(label, {n})
'''
        )
    return "".join(parts)


CLI = '''"""Command line."""

from lib.report import report_0, report_1
from lib.text import slugify


def main(argv):
    """Print two reports."""
    name = slugify(argv[0], separator=".")
    first = report_0([1, 2, 3], name, argv)
    second = report_1([4, 5], name, argv)
    return first, second
'''

JOBS = '''"""Held-out jobs: evaluation targets only."""

from lib.mathutil import add, scale
from lib.text import shout


def nightly_job_total(values):
    """A held-out function."""
    tripled = scale(values, factor=7)
    return shout(str(add(sum(tripled), 99)))
'''


def write_fixture_repo(root: Path) -> Path:
    files = {
        "lib/__init__.py": "",
        "lib/mathutil.py": MATHUTIL,
        "lib/text.py": TEXT,
        "lib/store.py": STORE,
        "lib/report.py": _report(),
        "app/__init__.py": "",
        "app/cli.py": CLI,
        HELD_OUT_FILE: JOBS,
    }
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return root
