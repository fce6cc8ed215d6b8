"""Graph-grounded answers (Reasoning on Graphs) on a real repository, against plain retrieval.

    python bench/bench_graph.py [--corpus requests] [--steps 40] [--questions 100] [--threads N]
                                [--out bench/results/graph.json]

Runs the CLI as a user would on a fresh copy of a pinned PyPI sdist: `repolm index`, `repolm train
--tasks plan` (the planner alone, on questions about the training split's symbols; `--steps 0` skips
it and measures the plain base model only), then `repolm eval --graph` with the base model and the
planner adapter on questions about the evaluation split's symbols. Also times the code graph's build,
`repolm ask` as a command (model load included) and in-process on caller questions (model load
excluded: what a running server pays): as the settings answer, with the model's written answer forced,
and planning and following alone. Goals:
graph-grounded F1 above plain retrieval on relational questions (callers, implementers, overrides,
tests), with 100% valid paths; `repolm ask` p50 within 1.5 s on a caller question.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import fresh_copy, repolm
from report import machine

HERE = Path(__file__).resolve().parent
ASKED = {"requests": "What calls Session.request?", "httpx": "What calls Client.send?"}
TIMED_QUESTIONS = 12


def graph_build_seconds(repo: Path, repeats: int = 5) -> tuple[float, int, int]:
    """Median seconds to build the code graph in-process, with its node and edge counts."""
    from repolm.config import load_config
    from repolm.indexer.code_graph import CodeGraph
    from repolm.indexer.retrieval import Index

    index = Index.open(repo, load_config(repo))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        graph = CodeGraph.build(index)
        times.append(time.perf_counter() - started)
    index.close()
    return sorted(times)[repeats // 2], len(graph.nodes), graph.edge_count()


def ask_seconds(repo: Path, threads: int, seed: int) -> dict:
    """p50/p95 seconds of in-process `Engine.ask` on caller questions, the model and graph loaded first:
    as `repolm ask` answers with the repository's settings, with the model's written answer forced
    (`ask_reasoning = "always"`), and planning and following only."""
    import torch

    from repolm.assist.ask import answer, model_reasoner
    from repolm.assist.engine import Engine
    from repolm.assist.plan import model_planner
    from repolm.config import load_config
    from repolm.training import metrics
    from repolm.training.graph_questions import questions

    config = load_config(repo)
    engine = Engine(repo, config)
    model, graph = engine.model(), engine.code_graph()
    if threads > 0:
        torch.set_num_threads(threads)
    asked = questions(graph, lambda node: True, TIMED_QUESTIONS, seed, kinds=("callers",))
    planner, reasoner = model_planner(model), model_reasoner(model, config.serve)
    timings: dict[str, list[float]] = {"ask": [], "with_written_answer": [], "plan_and_follow": []}
    kept = 0
    for question in asked:
        started = time.perf_counter()
        engine.ask(question.question)
        timings["ask"].append(time.perf_counter() - started)
        started = time.perf_counter()
        written = answer(graph, question.question, planner, reasoner)
        timings["with_written_answer"].append(time.perf_counter() - started)
        started = time.perf_counter()
        followed = answer(graph, question.question, planner)
        timings["plan_and_follow"].append(time.perf_counter() - started)
        kept += written.answer != followed.answer  # the verifier kept the written answer
    result: dict = {"questions": [q.question for q in asked], "written_answers_kept": kept}
    for name, seconds in timings.items():
        p50, p95 = metrics.percentiles(seconds)
        result[name] = {"p50": metrics.rounded(p50), "p95": metrics.rounded(p95)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--steps", type=int, default=40, help="planner training steps (0: base model only)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (default: one per core)")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "graph.json")
    args = parser.parse_args()

    repo = fresh_copy(args.corpus, HERE / ".cache" / f"graph-{args.corpus}")
    repolm("index", str(repo))
    build_seconds, nodes, edges = graph_build_seconds(repo)
    planner, train_seconds, adapters = None, 0.0, []
    if args.steps > 0:
        started = time.perf_counter()
        planner = json.loads(
            repolm("train", "--repo", str(repo), "--name", "planner", "--tasks", "plan", "--profile", "full",
                   "--max-steps", str(args.steps), "--json")
        )  # fmt: skip
        train_seconds = time.perf_counter() - started
        adapters = ["--adapter", f"planner={repo / '.repolm' / 'adapters' / 'planner'}"]
    evaluation_file = args.out.parent / f"{args.out.stem}_eval.json"
    repolm(
        "eval", "--repo", str(repo), "--arms", "in_file", "--limit", "1", "--explain", "0",
        "--graph", str(args.questions), "--seed", str(args.seed), *adapters, "--threads", str(args.threads),
        "--json", str(evaluation_file), "--report", str(args.out.parent / f"{args.out.stem}_report"),
    )  # fmt: skip
    evaluation = json.loads(evaluation_file.read_text(encoding="utf-8"))
    if planner is not None:
        repolm("adapters", "activate", "planner", "--repo", str(repo))
    ask = ASKED.get(args.corpus, ASKED["requests"])
    started = time.perf_counter()
    asked = json.loads(repolm("ask", ask, "--repo", str(repo), "--json"))
    ask_command_seconds = time.perf_counter() - started
    in_process = ask_seconds(repo, args.threads, args.seed)

    graphs = {name: model["graph"] for name, model in evaluation["models"].items()}
    result = {
        "command": " ".join(["python", "bench/bench_graph.py", *sys.argv[1:]]),
        "corpus": args.corpus,
        "machine": machine(),
        "graph": {"nodes": nodes, "edges": edges, "build_seconds_median": round(build_seconds, 3)},
        "planner": planner and {"dataset": planner["dataset"], "train": planner["train"],
                                "wall_seconds": round(train_seconds, 1)},
        "ask": {"question": ask, "command_wall_seconds": round(ask_command_seconds, 1),
                "answer": asked["answer"], "paths": len(asked["paths"]), "in_process_seconds": in_process},
        "models": {name: {k: v for k, v in g.items() if k != "records"} for name, g in graphs.items()},
    }  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"\ncode graph: {nodes} nodes, {edges} edges, built in {build_seconds:.3f} s (median of 5)")
    if planner is not None:
        print(f"planner: {planner['dataset']['examples']} examples, {planner['train']['steps']} steps, "
              f"{train_seconds:.0f} s")  # fmt: skip
    for name, g in result["models"].items():
        print(f"{name}: {g['n']} questions ({g['relational_n']} relational), plan hit {g['plan_hit']}, "
              f"valid paths {g['path_validity']} of {g['paths_shown']}")  # fmt: skip
        for method, m in g["methods"].items():
            f1 = m["relational_f1"]
            print(f"  {method:>9}: Hits@1 {m['hits@1']['mean']}, F1 {m['f1']['mean']}, relational F1 "
                  f"{f1['mean']} [{f1['ci_low']}, {f1['ci_high']}],"
                  f" p50 {m['latency_ms']['p50']} ms, p95 {m['latency_ms']['p95']} ms")  # fmt: skip
    print(f"`repolm ask {ask!r}`: {ask_command_seconds:.1f} s wall (model load included), "
          f"{len(asked['paths'])} paths")  # fmt: skip
    for name in ("ask", "with_written_answer", "plan_and_follow"):
        seconds = in_process[name]
        print(f"in-process ask on {len(in_process['questions'])} caller questions, {name}: "
              f"p50 {seconds['p50']} s, p95 {seconds['p95']} s")  # fmt: skip
    print(f"written answers the verifier kept: {in_process['written_answers_kept']} of "
          f"{len(in_process['questions'])}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
