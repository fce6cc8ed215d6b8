"""Terminal output for the CLI: rich progress bars and tables. Nothing here computes anything."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from rich.table import Table

from repolm.config import Progress

console = Console()


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Progress]:
    """A (stage, done, total) callback that drives one bar per stage; silent when not on a terminal."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Bars(*columns, console=Console(stderr=True), transient=True) as bars:
        tasks: dict[str, int] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield report


def print_index_summary(summary: dict) -> None:
    table = Table(title=f"repolm index: {summary['root']}", show_header=False)
    rows = [
        ("generation", summary["generation"]),
        ("files indexed", summary["files"]),
        ("chunks", summary["chunks"]),
        (
            "added / changed / removed / renamed",
            f"{summary['added']} / {summary['changed']} / {summary['removed']} / {summary['renamed']}",
        ),
        ("unchanged", summary["unchanged"]),
        ("chunks embedded (rest cached)", summary["embedded"]),
        ("docstrings embedded (rest cached)", summary["summaries_embedded"]),
        ("unused cached vectors dropped", summary["vectors_pruned"]),
        ("secrets redacted (this run / total)", f"{summary['redactions']} / {summary['redactions_total']}"),
        ("files with syntax errors (indexed anyway)", summary["syntax_error_files"]),
    ]
    rows += [(f"skipped: {reason}", count) for reason, count in summary["skipped"].items()]
    rows += [("repaired", repair) for repair in summary["repairs"]]
    rows += [(f"seconds: {stage}", seconds) for stage, seconds in summary["seconds"].items()]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


def print_hits(query: str, hits: list[dict]) -> None:
    if not hits:
        console.print(f"no hits for {query!r}")
        return
    for rank, hit in enumerate(hits, 1):
        console.print(
            f"{rank:>2}. [bold]{hit['path']}:{hit['start_line']}-{hit['end_line']}[/bold] "
            f"{hit['symbol']} [dim]({hit['kind']}, {hit['score']:.4f})[/dim]",
            highlight=False,
        )


def print_status(status: dict) -> None:
    table = Table(title=f"repolm status: {status['root']}", show_header=False)
    for name in (
        "index_dir",
        "generation",
        "files",
        "chunks",
        "redactions",
        "vectors_cached",
        "syntax_error_files",
        "invalid_utf8_files",
        "index_bytes",
    ):
        table.add_row(name.replace("_", " "), str(status[name]))
    for language, count in status["languages"].items():
        table.add_row(f"language: {language}", str(count))
    for reason, count in status["skipped"].items():
        examples = ", ".join(status["skipped_examples"].get(reason, [])[:3])
        table.add_row(f"skipped: {reason}", f"{count}  [dim]{examples}[/dim]")
    console.print(table)
    for problem in status["problems"]:  # a line each, unwrapped: it ends with the command that fixes it
        console.print(f"[bold red]problem:[/bold red] {problem}", soft_wrap=True, highlight=False)
