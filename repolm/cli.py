"""`repolm` command line: argument parsing and printing only; the work lives in the packages."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repolm.config import FUSIONS, SEARCH_MODES, TASKS, TRAIN_PROFILES, Config, ConfigError, load_config

EXIT_USAGE = 2


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The engine logs what the language server should report; the other commands print their own
    # one-line errors, so its warnings must not also reach stderr (`serve` configures logging itself).
    logging.getLogger("repolm.server").addHandler(logging.NullHandler())
    try:
        return int(args.run(args) or 0)
    except (CliError, ConfigError) as error:
        print(f"repolm: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("repolm: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        message = _index_error(error)
        if message is not None:
            print(f"repolm: {message}", file=sys.stderr)
            return EXIT_USAGE
        if _engine_down(error):
            print(f"repolm: {error}", file=sys.stderr)
            return 1
        raise


def _engine_down(error: Exception) -> bool:
    """Whether `error` is an engine's failure to answer (`[model] backend = "openai"`); the engine
    client is only imported when it was used."""
    if "repolm.engine_http" not in sys.modules:
        return False
    from repolm.engine_http import EngineError

    return isinstance(error, EngineError)


def _index_error(error: Exception) -> str | None:
    """One line, naming the fix, for a problem of the index itself (missing, damaged, busy, not
    writable), which any command that reads or writes it can meet; None for anything else."""
    import sqlite3

    from repolm.indexer.builder import IndexBusyError
    from repolm.indexer.store import IndexFormatError, IndexWriteError, database_error

    if isinstance(error, sqlite3.DatabaseError):
        return str(database_error(error))
    if isinstance(error, (IndexFormatError, IndexWriteError, IndexBusyError)):
        return str(error)
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repolm", description="A code assistant that learns one codebase.")
    commands = parser.add_subparsers(dest="command", required=True)

    index = commands.add_parser("index", help="index a repository (incremental)")
    index.add_argument("path", nargs="?", default=".", help="repository root (default: current folder)")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.add_argument("--rebuild", action="store_true", help="discard the index and build it anew")
    index.set_defaults(run=_index)

    search = commands.add_parser("search", help="search the index")
    search.add_argument("query", nargs="?", help="what to look for")
    search.add_argument(
        "--queries", type=Path, help="a file with one query per line; prints one JSON line each"
    )
    search.add_argument("--mode", choices=SEARCH_MODES, help="retriever (default: hybrid)")
    search.add_argument("-k", type=int, default=10, help="number of hits (default: 10)")
    search.add_argument("--fusion", choices=FUSIONS, help="how hybrid mode combines rankings")
    search.add_argument("--per-file-cap", type=int, help="at most this many hits from one file (0: no cap)")
    search.add_argument(
        "--exclude-path", action="append", default=[], help="never return hits from this file"
    )
    search.add_argument(
        "--repo", type=Path, default=Path("."), help="repository root (default: current folder)"
    )
    search.add_argument("--json", action="store_true", help="print hits as JSON")
    search.set_defaults(run=_search)

    status = commands.add_parser("status", help="what the index holds and what was skipped")
    status.add_argument("path", nargs="?", default=".", help="repository root (default: current folder)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=_status)

    serve = commands.add_parser("serve", help="run the language server (stdio unless --tcp)")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    serve.set_defaults(run=_serve)

    complete = commands.add_parser("complete", help="complete code at FILE:LINE:COL (1-based)")
    complete.add_argument("position", metavar="FILE:LINE:COL")
    complete.add_argument("--repo", type=Path, help="repository root (default: found from FILE)")
    complete.add_argument("--json", action="store_true", help="print details as JSON")
    complete.set_defaults(run=_complete)

    explain = commands.add_parser("explain", help="explain the symbol at FILE:LINE:COL (1-based) or SYMBOL")
    explain.add_argument("target", metavar="FILE:LINE:COL|SYMBOL")
    explain.add_argument("--repo", type=Path, help="repository root (default: found from FILE, or .)")
    explain.add_argument("--card-only", action="store_true", help="the symbol card, without the model")
    explain.add_argument("--json", action="store_true", help="print card and explanation as JSON")
    explain.set_defaults(run=_explain)
    ask = commands.add_parser("ask", help="answer a question about the code from paths in the code graph")
    ask.add_argument("question", help='e.g. "What calls Session.request?"')
    ask.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
    ask.add_argument("--json", action="store_true", help="print answer, entities and paths as JSON")
    ask.set_defaults(run=_ask)
    evaluate = commands.add_parser("eval", help="evaluate completions (and explanations) on held-out code")
    evaluate.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
    evaluate.add_argument("--split", default="file", help="file[:FRACTION] (default) or commit:REV")
    evaluate.add_argument("--arms", nargs="+", help="in_file bm25 dense hybrid oracle (default: all of them)")
    evaluate.add_argument("--limit", type=int, default=200, help="completion targets (default: 200)")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed (default: 0)")
    evaluate.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=PATH", help="also evaluate this adapter"
    )
    evaluate.add_argument(
        "--no-base",
        action="store_true",
        help="only the --adapter models (to add them to an earlier run with the same split, limit and seed)",
    )
    evaluate.add_argument("--explain", type=int, default=10, help="symbols to explain (default: 10; 0: none)")
    evaluate.add_argument(
        "--graph", type=int, default=30, help="relational questions for graph-grounded answers (default: 30)"
    )
    evaluate.add_argument("--threads", type=int, default=0, help="inference threads (default: one per core)")
    evaluate.add_argument(
        "--embedding-model",
        metavar="PATH|base",
        help="retrieve with this sentence-transformers folder (base: the embedded MiniLM); default: the"
        " active fine-tuned retriever, else the embedded model",
    )
    evaluate.add_argument("--json", type=Path, metavar="OUT", help="write the results here")
    evaluate.add_argument(
        "--report", type=Path, metavar="DIR", help="HTML report folder (default: INDEX_DIR/eval)"
    )
    evaluate.set_defaults(run=_eval)
    _training_parsers(commands)
    return parser


def _training_parsers(commands: argparse._SubParsersAction) -> None:
    for command, help_text in (
        ("train", "build the RAFT dataset and train a LoRA adapter (registered, not activated)"),
        ("retrain", "update the index, train, evaluate, promote only if better (exit 0/1/3/4, see docs)"),
    ):
        sub = commands.add_parser(command, help=help_text)
        sub.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
        sub.add_argument(
            "--profile", choices=TRAIN_PROFILES, help="default: [train] profile (auto: standard on a CPU)"
        )
        sub.add_argument("--name", default="", help="adapter name (default: MODE-TIMESTAMP)")
        sub.add_argument("--max-steps", type=int, help="override the profile's training steps")
        sub.add_argument("--json", action="store_true", help="print the result as JSON")
        if command == "train":
            sub.add_argument("--plain", action="store_true", help="the plain-LoRA control (no retrieval)")
            sub.add_argument(
                "--tasks", nargs="+", choices=TASKS, help="RAFT tasks in the dataset (default: all of them)"
            )
        else:
            sub.add_argument(
                "--limit", type=int, help="evaluation targets for the gate (default: the profile's)"
            )
            sub.add_argument(
                "--retriever-only",
                action="store_true",
                help="only fine-tune the retriever, gate it on held-out retrieval and promote it if better",
            )
        sub.set_defaults(run=_train if command == "train" else _retrain)
    adapters = commands.add_parser(
        "adapters", help="list, activate, roll back or export (GGUF, for llama.cpp) trained adapters"
    )
    adapters.add_argument("action", choices=("list", "activate", "rollback", "export"))
    adapters.add_argument("name", nargs="?", help="the adapter to activate or export (default: active)")
    adapters.add_argument("--gguf", type=Path, help="export: the GGUF LoRA file to write")
    adapters.add_argument(
        "--retriever", action="store_true", help="the fine-tuned retrievers instead of the LoRA adapters"
    )
    adapters.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
    adapters.add_argument("--json", action="store_true", help="print the listing as JSON")
    adapters.set_defaults(run=_adapters)


def _train_options(args: argparse.Namespace, config: Config, mode: str) -> object:
    from repolm.training.retrain import TrainOptions
    from repolm.training.retriever import RetrieverOptions
    from repolm.training.retriever_train import RetrieverTrainConfig

    limit = getattr(args, "limit", None)  # retrain's; train has no gate
    extra = {"eval_limit": limit} if limit else {}
    only = getattr(args, "retriever_only", False)
    if mode == "raft" and (config.train.retriever or only):
        # With --retriever-only, --name and --max-steps are the retriever's.
        steps = RetrieverTrainConfig(max_steps=args.max_steps or 0) if only else RetrieverTrainConfig()
        retriever = RetrieverOptions(args.name if only else "", train=steps, eval_limit=limit or 200)
        extra |= {"retriever": retriever, "retriever_only": only}
    return TrainOptions(args.profile or config.train.profile, mode, args.name, args.max_steps, **extra)


def _train(args: argparse.Namespace) -> int:
    from repolm.training.finetune import LaunchError
    from repolm.training.registry import Registry
    from repolm.training.retrain import train_adapter

    root, config = _repo_and_config(args.repo)
    config = config.with_overrides("train", tasks=args.tasks)
    options = _train_options(args, config, "plain" if args.plain else "raft")
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    # The trainer prints its logs to stdout; with --json, stdout carries the manifest alone.
    try:
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            manifest, _ = train_adapter(root, config, options, Registry(config.index_path(root)), log)
    except LaunchError as error:
        raise CliError(str(error)) from error
    print(json.dumps(manifest.to_json(), indent=2) if args.json else f"adapter: {manifest.name}")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from repolm.training.retrain import EXIT_ERROR, retrain

    root, config = _repo_and_config(args.repo)
    log = (lambda message: print(message, file=sys.stderr)) if args.json else print
    try:
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            report = retrain(root, config, _train_options(args, config, "raft"), log)
    except Exception as error:  # cron needs exit code 1 and a line it can mail, not a traceback
        print(f"repolm: retrain failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.to_json(), indent=2) if args.json else report.reason)
    return report.exit_code


def _adapters(args: argparse.Namespace) -> int:
    from repolm.training.registry import Registry, RegistryError
    from repolm.training.retrain import activate_adapter, rollback_adapter

    root, config = _repo_and_config(args.repo)
    if args.retriever:
        return _retrievers(args, root, config)
    registry = Registry(config.index_path(root))
    try:
        if args.action == "activate":
            if not args.name:
                raise CliError("adapters activate takes an adapter NAME")
            activate_adapter(root, config, registry, args.name)
            print(f"active: {args.name}")
        elif args.action == "export":
            return _export(args, registry, config)
        elif args.action == "rollback":
            print(f"active: {rollback_adapter(root, config, registry) or 'base model (no adapter)'}")
        elif args.json:
            print(json.dumps(registry.listing(), indent=2))
        else:
            for row in registry.listing():
                mark = "*" if row["active"] else " "
                similarity, em = row["hybrid_edit_similarity"], row["hybrid_exact_match"]
                scores = f"hybrid edit similarity {similarity}, EM {em}"
                print(f"{mark} {row['name']}  {row['mode']}  {scores}  {row['created']}")
    except RegistryError as error:
        raise CliError(str(error)) from error
    return 0


def _export(args: argparse.Namespace, registry: Any, config: Config) -> int:
    """`adapters export`: the named (or active) adapter as a GGUF LoRA; `registry` is the adapters'."""
    from repolm.model import resolve_base
    from repolm.training.export import ExportError, export_gguf

    if args.gguf is None:
        raise CliError("adapters export takes --gguf FILE, the GGUF LoRA to write")
    name = args.name or registry.active()
    if not name:
        raise CliError("no adapter is active: name the one to export")
    try:
        written = export_gguf(registry.path(name), resolve_base(config.serve.model or None), args.gguf)
    except ExportError as error:
        raise CliError(str(error)) from error
    print(f"exported {name} to {written} (llama-server --lora {written})")
    return 0


def _retrievers(args: argparse.Namespace, root: Path, config: Config) -> int:
    from repolm.training.registry import RegistryError
    from repolm.training.retriever import activate_retriever, retriever_registry, rollback_retriever

    registry = retriever_registry(root, config)
    try:
        if args.action == "activate":
            if not args.name:
                raise CliError("adapters activate --retriever takes a retriever NAME")
            if args.name not in registry.names():
                raise RegistryError(f"no retriever named {args.name!r} in {registry.root}")
            activate_retriever(root, config, registry, args.name)
            print(f"active retriever: {args.name}")
        elif args.action == "rollback":
            print(f"active retriever: {rollback_retriever(root, config, registry) or 'the embedded model'}")
        else:
            active = registry.active()
            rows = [
                {"name": name, "active": name == active, **_retriever_row(registry.manifest(name))}
                for name in registry.names()
            ]
            if args.json:
                print(json.dumps(rows, indent=2))
            for row in [] if args.json else rows:
                mark = "*" if row["active"] else " "
                print(f"{mark} {row['name']}  completion acc@5 {row['acc@5']}  promoted {row['promoted']}")
    except RegistryError as error:
        raise CliError(str(error)) from error
    return 0


def _retriever_row(manifest: dict) -> dict[str, object]:
    completion = manifest.get("eval_metrics", {}).get("candidate", {}).get("completion", {})
    return {
        "created": manifest.get("created"),
        "acc@5": completion.get("acc@5"),
        "mrr": completion.get("mrr"),
        "promoted": manifest.get("gate", {}).get("promote"),
    }


def _repo_and_config(path: Path) -> tuple[Path, Config]:
    if not path.exists():
        raise CliError(f"{path}: no such folder")
    if not path.is_dir():
        raise CliError(f"{path}: not a folder")
    root = path.resolve()
    try:
        return root, load_config(root)
    except ConfigError as error:
        raise CliError(str(error)) from error


def _index(args: argparse.Namespace) -> int:
    from repolm.indexer.builder import update_index

    from .progress import progress_bar

    root, config = _repo_and_config(Path(args.path))
    with progress_bar(enabled=not args.json and sys.stderr.isatty()) as report:
        summary = update_index(root, config, progress=report, rebuild=args.rebuild)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        from .progress import print_index_summary

        print_index_summary(summary.to_json())
    return 0


def _search(args: argparse.Namespace) -> int:
    from repolm.indexer.retrieval import Index, SearchFilter

    if (args.query is None) == (args.queries is None):
        raise CliError("give a QUERY or --queries FILE (one of them)")
    if args.query is not None and not args.query.strip():
        raise CliError("the query is empty: give the words or identifiers to look for")
    if args.k <= 0:
        raise CliError("-k must be at least 1")
    root, config = _repo_and_config(args.repo)
    config = config.with_overrides("search", fusion=args.fusion, per_file_cap=args.per_file_cap)
    index = Index.open(root, config)

    where = SearchFilter(exclude_paths=frozenset(args.exclude_path))

    def run(query: str) -> list[dict[str, object]]:
        return [hit.to_json() for hit in index.search(query, mode=args.mode, k=args.k, where=where)]

    if args.queries is not None:
        _each_query(args.queries, run)
        return 0
    hits = run(args.query)
    if args.json:
        print(json.dumps(hits, indent=2))
    else:
        from .progress import print_hits

        print_hits(args.query, hits)
    return 0


def _each_query(path: Path, run: Callable[[str], list[dict[str, object]]]) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CliError(f"{path}: {error.strerror}") from error
    for line in lines:
        print(json.dumps(run(line) if line.strip() else []), flush=True)


def _status(args: argparse.Namespace) -> int:
    from repolm.indexer.status import index_status

    root, config = _repo_and_config(Path(args.path))
    status = index_status(root, config)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        from .progress import print_status

        print_status(status)
    return 0


def _serve(args: argparse.Namespace) -> int:
    tcp = None
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not host or not port.isdigit():
            raise CliError("--tcp takes HOST:PORT")
        tcp = (host, int(port))
    # Editors log a server's stderr as errors: no download/loading progress bars there. Set before
    # transformers is imported, which reads it once.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from repolm.server.lsp import serve

    serve(tcp)
    return 0


def _file_position(target: str) -> tuple[Path, int, int] | None:
    """FILE:LINE:COL with 1-based line and column, or None when `target` is not of that form."""
    parts = target.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    line, column = int(parts[1]), int(parts[2])
    if line < 1 or column < 1:
        raise CliError(f"{target}: LINE and COL are 1-based")
    return Path(parts[0]), line, column


def _find_root(start: Path, config_markers: tuple[str, ...] = (".repolm", ".git", "repolm.toml")) -> Path:
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in config_markers):
            return folder
    return start


def _engine(repo: Path | None, file: Path | None = None):
    """The engine of --repo, else of the root found from FILE (or the current folder), and FILE's
    root-relative path with its text. A FILE outside that root (`..`, a symlink leading out, another
    folder) is refused before anything is read, and before the model code is imported (seconds)."""
    from repolm.assist.workspace import OutsideWorkspaceError, Workspace

    root, config = _repo_and_config(repo or _find_root((file.parent if file else Path(".")).resolve()))
    relative, text = "", ""
    if file is not None:
        try:
            relative = Workspace(root).relative(file)
            text = (root / relative).read_text(encoding="utf-8")
        except OutsideWorkspaceError as error:
            raise CliError(str(error)) from error
        except (OSError, UnicodeDecodeError) as error:
            raise CliError(f"{file}: cannot read it as text ({error})") from error
    from repolm.assist.engine import Engine

    return Engine(root, config), relative, text


def _complete(args: argparse.Namespace) -> int:
    where = _file_position(args.position)
    if where is None:
        raise CliError(f"{args.position}: expected FILE:LINE:COL")
    file, line, column = where
    engine, path, text = _engine(args.repo, file)
    from repolm.assist.completion import CompletionRequest, PositionError

    request = CompletionRequest(path, text, line - 1, column - 1)
    try:
        result = engine.complete(request)
    except PositionError as error:
        raise CliError(str(error)) from error
    if engine.index_problem:
        print(f"repolm: completed without retrieval: {engine.index_problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.text)
    return 0


def _explain(args: argparse.Namespace) -> int:
    where = _file_position(args.target)
    engine, path, text = _engine(args.repo, where[0] if where else None)
    from repolm.assist.engine import NoIndexError

    buffers = {path: text} if where else {}
    try:
        if where is None:
            symbol = engine.symbol_named(args.target)
        else:
            _, line, column = where
            symbol = engine.symbol_at(path, text, line - 1, column - 1)
        if symbol is None:
            raise CliError(f"{args.target}: no symbol with a definition in the index there")
        explanation = engine.explain(symbol, path, buffers, with_model=not args.card_only)
    except NoIndexError as error:
        raise CliError(str(error)) from error
    if args.json:
        print(json.dumps(explanation.to_json(), indent=2))
    else:
        print(explanation.markdown())
    return 0


def _ask(args: argparse.Namespace) -> int:
    from repolm.assist.ask import render_path
    from repolm.assist.engine import Engine, NoIndexError

    root, config = _repo_and_config(args.repo)
    try:
        result, graph = Engine(root, config).ask(args.question)
    except NoIndexError as error:
        raise CliError(str(error)) from error
    if args.json:
        print(json.dumps(result.to_json(graph), indent=2))
        return 0
    print(result.answer)
    for path in result.paths:
        print(f"  {render_path(graph, path)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from repolm.training.eval_split import SplitError, parse_split
    from repolm.training.evaluate import ARMS, EvalOptions, run_evaluation
    from repolm.training.report import print_summary, write_report

    from .progress import progress_bar

    root, config = _repo_and_config(args.repo)
    if args.embedding_model:
        from repolm.indexer.dense import embedded_model_path

        model = str(embedded_model_path()) if args.embedding_model == "base" else args.embedding_model
        config = config.with_overrides("index", embedding_model=model)
    arms = tuple(args.arms or ARMS)
    if unknown := [arm for arm in arms if arm not in ARMS]:
        raise CliError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    adapters = dict(item.partition("=")[::2] for item in args.adapter)
    if any(not name or not path for name, path in adapters.items()) or "base" in adapters:
        raise CliError("--adapter takes NAME=PATH, with a NAME other than 'base'")
    if args.no_base and not adapters:
        raise CliError("--no-base needs at least one --adapter")
    try:
        split = parse_split(args.split, root)
    except SplitError as error:
        raise CliError(str(error)) from error
    options = EvalOptions(
        split, arms, args.limit, args.seed, adapters, args.explain, args.graph, with_base=not args.no_base
    )
    with progress_bar(enabled=sys.stderr.isatty()) as report:
        result = run_evaluation(root, config, options, report, args.threads)
    folder = args.report or config.index_path(root) / "eval"
    out = args.json or folder / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_summary(result)
    print(f"results: {out}")
    print(f"report: {write_report(result, folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
