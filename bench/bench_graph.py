"""Graph-grounded answers (Reasoning on Graphs) on a real repository, against plain retrieval.

    python bench/bench_graph.py [--corpus requests] [--steps 40] [--questions 100]
                                [--out bench/results/graph.json]

Runs the CLI as a user would on a fresh copy of a pinned PyPI sdist: `repolm index`, `repolm train
--tasks plan` (the planner alone, on questions about the training split's symbols), then `repolm eval
--graph` with the base model and the planner adapter on questions about the evaluation split's symbols.
Also times the code graph's build and `repolm ask`. Goal: graph-grounded F1 above plain retrieval on
relational questions (callers, implementers, overrides, tests), with 100% valid paths.
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
ASK = "What calls Session.request?"


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="requests")
    parser.add_argument("--steps", type=int, default=40, help="planner training steps")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "graph.json")
    args = parser.parse_args()

    repo = fresh_copy(args.corpus, HERE / ".cache" / f"graph-{args.corpus}")
    repolm("index", str(repo))
    build_seconds, nodes, edges = graph_build_seconds(repo)
    started = time.perf_counter()
    planner = json.loads(
        repolm("train", "--repo", str(repo), "--name", "planner", "--tasks", "plan", "--profile", "full",
               "--max-steps", str(args.steps), "--json")
    )  # fmt: skip
    train_seconds = time.perf_counter() - started
    adapter = repo / ".repolm" / "adapters" / "planner"
    evaluation_file = args.out.parent / "graph_eval.json"
    repolm(
        "eval", "--repo", str(repo), "--arms", "in_file", "--limit", "1", "--explain", "0",
        "--graph", str(args.questions), "--seed", str(args.seed), "--adapter", f"planner={adapter}",
        "--json", str(evaluation_file), "--report", str(args.out.parent / "graph_report"),
    )  # fmt: skip
    evaluation = json.loads(evaluation_file.read_text(encoding="utf-8"))
    repolm("adapters", "activate", "planner", "--repo", str(repo))
    started = time.perf_counter()
    asked = json.loads(repolm("ask", ASK, "--repo", str(repo), "--json"))
    ask_seconds = time.perf_counter() - started

    graphs = {name: model["graph"] for name, model in evaluation["models"].items()}
    result = {
        "command": " ".join(["python", "bench/bench_graph.py", *sys.argv[1:]]),
        "corpus": args.corpus,
        "machine": machine(),
        "graph": {"nodes": nodes, "edges": edges, "build_seconds_median": round(build_seconds, 3)},
        "planner": {"dataset": planner["dataset"], "train": planner["train"],
                    "wall_seconds": round(train_seconds, 1)},
        "ask": {"question": ASK, "wall_seconds": round(ask_seconds, 1), "answer": asked["answer"],
                "paths": len(asked["paths"])},
        "models": {name: {k: v for k, v in g.items() if k != "records"} for name, g in graphs.items()},
    }  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"\ncode graph: {nodes} nodes, {edges} edges, built in {build_seconds:.3f} s (median of 5)")
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
    print(f"`repolm ask {ASK!r}`: {ask_seconds:.1f} s wall, {len(asked['paths'])} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
