"""The language server measured the way editors use it: a real LSP client over stdio.

    python bench/bench_server.py [--corpus requests] [--lines 60] [--symbols 8] [--keystrokes 4]
                                 [--return-lines 24] [--adapter DIR] [--out FILE]

On a copy of a downloaded repository (indexed first), it starts `repolm serve`, and measures:
cold start to the first answer; completion latency (textDocument/inlineCompletion, one request per
sampled line, cursor after the line's indentation, the document cut at the cursor so nothing after it
is visible) with and without retrieval, single-line requests apart from those where the cursor opens
a block (the server then writes the block); the same lines typed a few characters at a time; the line
below each, reached by a jump and after writing the line above it; new lines and typing again with
every decoding pass on the bf16 weights (`int8Decoding` off); exact match and edit similarity of the
completed line against the real one; hover latency with the symbol card alone and with the model's
explanation (as served, on int8 weight copies, and on the bf16 weights, the two taking turns over the
same symbols); a line completed again, one character further, after a hover's explanation elsewhere
or a completion in another file, with the KV caches of 3 recent prompts kept (the default) and of 1;
the server's resident memory.
Figures are medians and 95th percentiles of this run.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CORPORA, indexed_copy
from report import machine, write_report

from repolm.assist.completion import opens_block


def sample_lines(root: Path, count: int, seed: int = 0) -> list[tuple[str, int, str]]:
    """(path, 0-based line, text): indented code lines of at least 5 tokens, not comments."""
    candidates = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(".repolm"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            body = line.strip()
            long_enough = len(body.split()) >= 3 and len(body) >= 16
            if line.startswith("    ") and long_enough and not body.startswith(("#", '"', "'")):
                candidates.append((relative, number, line))
    return random.Random(seed).sample(candidates, min(count, len(candidates)))


def cut_at_indentation(root: Path, relative: str, number: int, line: str) -> tuple[str, int]:
    """The document as the editor has it with the cursor after the line's indentation and nothing after
    the cursor written yet, and the cursor's column."""
    text = (root / relative).read_text(encoding="utf-8").splitlines(keepends=True)
    indent = len(line) - len(line.lstrip())
    return "".join(text[:number]) + line[:indent], indent


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
    }


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class Session:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.client = LanguageClient("repolm-bench", "1")
        self.version = 0

    async def start(self, settings: dict) -> None:
        await self.client.start_io(sys.executable, "-m", "repolm.cli", "serve", cwd=str(self.root))
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                root_uri=self.root.as_uri(),
                initialization_options=settings,
            )
        )
        self.client.initialized(types.InitializedParams())

    def configure(self, settings: dict) -> None:
        self.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))

    def open(self, relative: str, text: str) -> str:
        uri = (self.root / relative).as_uri()
        self.version += 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", self.version, text))
        )
        return uri

    async def complete(self, uri: str, line: int, character: int) -> str:
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
                types.TextDocumentIdentifier(uri),
                types.Position(line, character),
            )
        )
        items = result.items if isinstance(result, types.InlineCompletionList) else result or []
        return str(items[0].insert_text) if items else ""

    async def hover(self, uri: str, line: int, character: int) -> str:
        result = await self.client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(line, character))
        )
        return result.contents.value if result and isinstance(result.contents, types.MarkupContent) else ""

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


async def completions(
    session: Session, lines: list[tuple[str, int, str]], score_every: int = 1
) -> dict[str, object]:
    """Latency split by what the server generates: one line, or a block when the cursor opens one.

    With `score_every` n, only every nth request is measured and scored; the others only lead up to it.
    """
    latencies: dict[str, list[float]] = {"single_line": [], "block": []}
    exact, similarity = [], []
    for index, (relative, number, line) in enumerate(lines, start=1):
        prefix, indent = cut_at_indentation(session.root, relative, number, line)
        uri = session.open(relative, prefix)
        started = time.perf_counter()
        inserted = await session.complete(uri, number, indent)
        if index % score_every:
            continue
        latencies["block" if opens_block(prefix) else "single_line"].append(time.perf_counter() - started)
        expected = line.strip()
        got = inserted.split("\n", 1)[0].strip()
        exact.append(got == expected)
        similarity.append(Levenshtein.normalized_similarity(got, expected))
    return {
        "latency": summary(latencies["single_line"]),
        "block_latency": summary(latencies["block"]),
        "exact_match": round(100 * sum(exact) / len(exact), 1),
        "edit_similarity": round(100 * statistics.mean(similarity), 1),
    }


async def typing(session: Session, lines: list[tuple[str, int, str]], keystrokes: int) -> dict[str, float]:
    """Latency while typing along a line: after the line's first request (a cold prefill, measured by
    `completions`), each keystroke asks again; the retrieval query leaves the line being typed out, so
    the prompt's head stays the same and the model's KV cache is reused. Only keystroke requests count."""
    latencies = []
    for relative, number, line in lines:
        text = (session.root / relative).read_text(encoding="utf-8").splitlines(keepends=True)
        indent = len(line) - len(line.lstrip())
        for column in range(indent, indent + min(keystrokes, len(line) - indent) + 1):
            uri = session.open(relative, "".join(text[:number]) + line[:column])
            started = time.perf_counter()
            await session.complete(uri, number, column)
            if column > indent:
                latencies.append(time.perf_counter() - started)
    return summary(latencies)


def next_lines(root: Path, lines: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """Each sampled line paired with the next non-blank line below it in its file (where there is one),
    flattened as (line, next line, line, next line, ...)."""
    pairs = []
    for relative, number, line in lines:
        text = (root / relative).read_text(encoding="utf-8").splitlines()
        below = next((n for n in range(number + 1, len(text)) if text[n].strip()), None)
        if below is not None:
            pairs += [(relative, number, line), (relative, below, text[below])]
    return pairs


def hover_targets(root: Path, count: int) -> list[tuple[str, int, int]]:
    """(path, 0-based line, column) on the names of distinct documented functions."""
    targets = []
    for path in sorted((root / "src").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines[:-1]):
            if line.startswith("def ") and lines[number + 1].strip().startswith('"""'):
                targets.append((relative, number, len("def ") + 1))
    return random.Random(1).sample(targets, min(count, len(targets)))


async def hovers(session: Session, targets: list[tuple[str, int, int]]) -> list[float]:
    latencies = []
    for relative, number, column in targets:
        uri = session.open(relative, (session.root / relative).read_text(encoding="utf-8"))
        started = time.perf_counter()
        contents = await session.hover(uri, number, column)
        latencies.append(time.perf_counter() - started)
        assert contents, f"no hover at {relative}:{number + 1}"
    return latencies


async def explanations(
    session: Session, targets: list[tuple[str, int, int]], arms: dict[str, dict]
) -> dict[str, dict[str, float]]:
    """Every target explained under both arms' settings, taking turns at going first, so that the
    machine's drift hits both alike. No hover follows one of the same symbol: the model's KV cache
    would answer most of its prompt."""
    first, second = arms
    latencies: dict[str, list[float]] = {first: [], second: []}
    for number in range(0, len(targets) - 1, 2):
        one, two = targets[number : number + 2]
        a, b = (first, second) if number % 4 == 0 else (second, first)
        for target, arm in ((one, a), (two, b), (one, b), (two, a)):
            session.configure(arms[arm])
            latencies[arm] += await hovers(session, [target])
    return {arm: summary(values) for arm, values in latencies.items()}


Interlude = Callable[[int], Awaitable[object]]  # the request made away from the line, given its number


async def coming_back(
    session: Session, lines: list[tuple[str, int, str]], interlude: Interlude, arms: dict[str, dict]
) -> dict[str, dict[str, float]]:
    """A line's completion, then a request elsewhere (`interlude`), then the same line with its first
    character typed, as when the user reads a hover, or writes in another file, and comes back; only
    that last request is timed. Single-line requests only; every arm's settings on every line, taking
    turns at going first (each configuration starts with empty answer caches, so every request runs
    the model)."""
    names = list(arms)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for number, (relative, line_number, line) in enumerate(single_lines(session.root, lines)):
        prefix, indent = cut_at_indentation(session.root, relative, line_number, line)
        turn = number % len(names)
        for arm in names[turn:] + names[:turn]:
            session.configure(arms[arm])
            await session.complete(session.open(relative, prefix), line_number, indent)
            await interlude(number)
            uri = session.open(relative, prefix + line[indent])
            started = time.perf_counter()
            await session.complete(uri, line_number, indent + 1)
            latencies[arm].append(time.perf_counter() - started)
    return {arm: summary(values) for arm, values in latencies.items()}


def single_lines(root: Path, lines: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    """The lines whose request is a single-line one (the cursor opens no block)."""
    return [line for line in lines if not opens_block(cut_at_indentation(root, *line)[0])]


def hover_interlude(session: Session, targets: list[tuple[str, int, int]]) -> Interlude:
    """A hover explained by the model, on a documented function elsewhere."""
    return lambda number: hovers(session, [targets[number % len(targets)]])


def other_file_interlude(session: Session, lines: list[tuple[str, int, str]]) -> Interlude:
    """A completion on the next of `lines` that lies in another file."""
    single = single_lines(session.root, lines)

    async def elsewhere(number: int) -> None:
        here = single[number][0]
        relative, line_number, line = next(
            (other for other in single[number + 1 :] + single[:number] if other[0] != here), single[number]
        )
        prefix, indent = cut_at_indentation(session.root, relative, line_number, line)
        await session.complete(session.open(relative, prefix), line_number, indent)

    return elsewhere


# Explanations on, answer caches off: every request runs the model.
UNCACHED_ANSWERS = {"explain": {"enabled": True}, "completion": {"cacheSize": 0}}


async def run(
    root: Path, lines: int, symbols: int, keystrokes: int, return_lines: int, adapter: Path | None
) -> dict[str, object]:
    session = Session(root)
    started = time.perf_counter()
    await session.start({"repolm": {"explain": {"enabled": False}}})
    sample = sample_lines(root, lines)
    first_path, first_line, first_text = sample[0]
    first_prefix, indent = cut_at_indentation(root, first_path, first_line, first_text)
    uri = session.open(first_path, first_prefix)
    await session.complete(uri, first_line, indent)
    cold = time.perf_counter() - started
    result: dict[str, object] = {"cold_start_to_first_completion_s": round(cold, 2)}
    result["with_retrieval"] = await completions(session, sample)
    # No answer cache, so each line's first request runs the model and leaves its prompt in the KV cache.
    session.configure({"repolm": {"explain": {"enabled": False}, "completion": {"cacheSize": 0}}})
    result["typing"] = await typing(session, sample, keystrokes)
    # The lines after the sampled ones: reached by a jump (the previous request was elsewhere), then by
    # writing the line above them first. Answer cache off in both, so every request runs the model.
    pairs = next_lines(root, sample)
    session.configure({"repolm": {"explain": {"enabled": False}, "completion": {"cacheSize": 0}}})
    result["next_line_by_jump"] = await completions(session, pairs[1::2])
    # After writing: each line's request, then the next line's with that line written out, as after
    # pressing Enter. The snippets still among the candidates are kept and the prefix keeps its start,
    # so the model's KV cache covers the prompt up to the line just written.
    result["next_line_after_writing"] = await completions(session, pairs, score_every=2)
    # The same requests decoded one token per forward pass: what prompt-lookup drafting saves.
    session.configure({"repolm": {"explain": {"enabled": False}, "draftTokens": 0}})
    result["with_retrieval_without_drafts"] = await completions(session, sample)
    # The same requests, and the typing, with every pass on the bf16 weights instead of int8 copies.
    on_bf16 = {"explain": {"enabled": False}, "int8Decoding": False}
    session.configure({"repolm": on_bf16})
    result["with_retrieval_on_bf16"] = await completions(session, sample)
    session.configure({"repolm": on_bf16 | {"completion": {"cacheSize": 0}}})
    result["typing_on_bf16"] = await typing(session, sample, keystrokes)
    if adapter is not None:  # a trained LoRA adapter, served merged into the base weights
        session.configure({"repolm": {"explain": {"enabled": False}, "adapter": str(adapter.resolve())}})
        await session.complete(uri, first_line, indent)  # the swap happens here, outside the clock
        result["with_retrieval_with_adapter"] = await completions(session, sample)
    session.configure({"repolm": {"explain": {"enabled": False}, "completion": {"snippets": 0}}})
    result["without_retrieval"] = await completions(session, sample)
    targets = hover_targets(root, symbols * 2)
    result["hover_card"] = summary(await hovers(session, targets[:symbols]))
    # Explanations as served (passes after the prefill on int8 weight copies) and on the bf16 weights.
    arms = {
        "hover_with_explanation": {"repolm": {"explain": {"enabled": True}}},
        "hover_with_explanation_on_bf16": {"repolm": {"explain": {"enabled": True}, "int8Decoding": False}},
    }
    result.update(await explanations(session, targets[symbols:], arms))
    # Back to a line after a hover's explanation, or a completion in another file: with the KV caches
    # of the last 3 prompts kept (the default), and with one, which the request in between takes over.
    for place, interlude in (
        ("after_hover", hover_interlude(session, targets)),
        ("from_another_file", other_file_interlude(session, sample[:return_lines])),
    ):
        caches = {
            f"{place}_3_prompt_caches": {"repolm": UNCACHED_ANSWERS | {"promptCaches": 3}},
            f"{place}_1_prompt_cache": {"repolm": UNCACHED_ANSWERS | {"promptCaches": 1}},
        }
        result.update(await coming_back(session, sample[:return_lines], interlude, caches))
    server_pid = session.client._server.pid  # the child process started by start_io
    result["server_rss_mib"] = resident_mib(server_pid)
    await session.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default="requests", choices=sorted(CORPORA))
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--keystrokes", type=int, default=4, help="characters typed per line for `typing`")
    parser.add_argument("--return-lines", type=int, default=24, help="sampled lines for `coming_back`")
    parser.add_argument("--out", type=Path, default=Path("bench/results/server.json"))
    parser.add_argument(
        "--adapter",
        type=Path,
        help="also complete with this LoRA adapter folder, e.g. one `repolm train` made on the same corpus",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repolm-bench-") as scratch:
        root = indexed_copy(args.corpus, Path(scratch) / args.corpus)
        result = asyncio.run(
            run(root, args.lines, args.symbols, args.keystrokes, args.return_lines, args.adapter)
        )
    report = {"machine": machine(), "corpus": CORPORA[args.corpus], **result}
    write_report(report, args.out)


if __name__ == "__main__":
    main()
