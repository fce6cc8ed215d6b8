"""What keeping several prompts' KV caches costs in memory, through the LSP path.

    python bench/bench_prompt_caches.py [--corpus requests] [--lines 24] [--caches 1 3] [--out FILE]

For each `promptCaches` setting, a fresh `repolm serve` on the same indexed copy of a downloaded
repository gets the same requests: `bench_server.py`'s sampled lines completed, then the line-after-a-
hover sequence (complete a line, hover a documented function elsewhere with the model's explanation,
complete the line again one character further). The server's resident memory is read at the start
(after its first completion) and at the end. The servers run one after another, so compare the
settings within one run: the same setting's readings moved by about 100 MiB between runs here.
`bench_server.py` compares the latency, the settings taking turns within one server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import (
    UNCACHED_ANSWERS,
    Session,
    coming_back,
    completions,
    cut_at_indentation,
    hover_interlude,
    hover_targets,
    resident_mib,
    sample_lines,
)
from corpora import CORPORA, indexed_copy
from report import machine, write_report


async def one_server(root: Path, caches: int, lines: int) -> dict[str, object]:
    settings = {"repolm": UNCACHED_ANSWERS | {"promptCaches": caches}}
    session = Session(root)
    await session.start(settings)
    sample = sample_lines(root, lines)
    relative, number, line = sample[0]
    prefix, indent = cut_at_indentation(root, relative, number, line)
    await session.complete(session.open(relative, prefix), number, indent)
    pid = session.client._server.pid  # the child process started by start_io
    result: dict[str, object] = {"rss_mib_after_first_completion": resident_mib(pid)}
    result["completions"] = await completions(session, sample)
    label = f"after_hover_{caches}"
    interlude = hover_interlude(session, hover_targets(root, lines))
    result.update(await coming_back(session, sample, interlude, {label: settings}))
    result["rss_mib_at_end"] = resident_mib(pid)
    await session.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="requests", choices=sorted(CORPORA))
    parser.add_argument("--lines", type=int, default=24)
    parser.add_argument("--caches", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--out", type=Path, default=Path("bench/results/prompt_caches.json"))
    args = parser.parse_args()
    report: dict[str, object] = {"machine": machine(), "corpus": CORPORA[args.corpus]}
    with tempfile.TemporaryDirectory(prefix="repolm-bench-") as scratch:
        root = indexed_copy(args.corpus, Path(scratch) / args.corpus)
        for caches in args.caches:
            report[f"prompt_caches={caches}"] = asyncio.run(one_server(root, caches, args.lines))
            print(caches, report[f"prompt_caches={caches}"], flush=True)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
