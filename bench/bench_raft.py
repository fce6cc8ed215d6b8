"""Does RAFT teach the model to read the retrieved code? Base / plain LoRA / RAFT × in-file / hybrid /
oracle on held-out files of real repositories, paired per target, per repository and pooled.

    python bench/bench_raft.py [--corpora httpx jinja2 werkzeug] [--profile standard] [--steps N]
                               [--limit 150] [--models base plain raft] [--arms in_file hybrid oracle]
                               [--reuse] [--budget TOKENS] [--retriever CORPUS=FOLDER ...]
                               [--base FOLDER]
                               [--out bench/results/raft.json]

For each corpus (a pinned PyPI sdist, downloaded and copied fresh), as a user would: `repolm index`,
`repolm train` (RAFT) and `repolm train --plain` (the domain fine-tuning control, the same profile),
then `repolm eval` of every model on every arm over the same held-out targets (the file split: files
the training never saw). Every comparison is paired target by target with a bootstrap interval, per
repository and pooled over all of them; the oracle comparison is over the targets that have oracle
chunks. All arms retrieve with the embedded MiniLM; `--retriever` runs the hybrid arm once more with
each corpus's fine-tuned embedding model (`hybrid_tuned`: `repolm retrain --retriever-only` makes one,
as `bench_retriever.py` does on the same file split). `--base` trains and evaluates another base model
(a local Hugging Face folder, set as `[serve] model` in each copy, as a user would) in copies of its
own. Writes the JSON (`--out`) and an HTML report with its plots beside it (`<out stem>_report/`).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import fresh_copy, repolm
from report import machine

from repolm.training.metrics import bootstrap

HERE = Path(__file__).resolve().parent
SCORES = ("edit_similarity", "identifier_f1", "exact_match")
DEFAULT_CORPORA = ("httpx", "jinja2", "werkzeug")


@dataclass(frozen=True)
class Comparison:
    """`top` minus `bottom` (model, arm), target by target, over the targets whose record has `only` (a
    field) set: `oracle_chunks` (the line uses repository code defined elsewhere) or `oracle_supplies`
    (its oracle chunks hold a name the line needs and the code before the cursor lacks)."""

    name: str
    top: tuple[str, str]
    bottom: tuple[str, str]
    only: str = ""
    goal: float | None = None  # the edit-similarity difference the pooled mean must reach (interval > 0)
    floor: float | None = None  # or the lowest it may fall to (no forgetting)
    # Minus this pair's difference on the same target (a difference in differences).
    baseline: tuple[tuple[str, str], tuple[str, str]] | None = None


COMPARISONS = (
    Comparison("RAFT: oracle − in-file", ("raft", "oracle"), ("raft", "in_file"), "oracle_chunks", goal=0.05),
    Comparison(
        "RAFT: oracle − in-file, oracle supplies a name",
        ("raft", "oracle"),
        ("raft", "in_file"),
        "oracle_supplies",
    ),
    Comparison("RAFT: hybrid − in-file", ("raft", "hybrid"), ("raft", "in_file"), goal=0.02),
    Comparison("hybrid: RAFT − plain LoRA", ("raft", "hybrid"), ("plain", "hybrid"), goal=0.0),
    Comparison("hybrid: RAFT − base", ("raft", "hybrid"), ("base", "hybrid"), goal=0.0),
    Comparison("in-file: RAFT − base", ("raft", "in_file"), ("base", "in_file"), floor=-0.01),
    # With `--retriever`: the fine-tuned retriever and the RAFT adapter together against either alone.
    Comparison("RAFT hybrid: tuned − base retriever", ("raft", "hybrid_tuned"), ("raft", "hybrid"), goal=0.0),
    Comparison("tuned retriever: RAFT − base", ("raft", "hybrid_tuned"), ("base", "hybrid_tuned"), goal=0.0),
    Comparison("base model hybrid: tuned − base retriever", ("base", "hybrid_tuned"), ("base", "hybrid")),
    Comparison("base: oracle − in-file", ("base", "oracle"), ("base", "in_file"), "oracle_chunks"),
    Comparison(
        "base: oracle − in-file, oracle supplies a name",
        ("base", "oracle"),
        ("base", "in_file"),
        "oracle_supplies",
    ),
    Comparison("plain LoRA: oracle − in-file", ("plain", "oracle"), ("plain", "in_file"), "oracle_chunks"),
    # Does fine-tuning make the oracle worth more: RAFT's oracle gain minus the base model's, per target.
    Comparison(
        "oracle gain: RAFT − base",
        ("raft", "oracle"),
        ("raft", "in_file"),
        "oracle_chunks",
        baseline=(("base", "oracle"), ("base", "in_file")),
    ),
)


def train(repo: Path, name: str, profile: str, steps: int | None, plain: bool) -> dict:
    arguments = ["train", "--repo", str(repo), "--name", name, "--profile", profile, "--json"]
    arguments += ["--max-steps", str(steps)] if steps else []
    arguments += ["--plain"] if plain else []
    started = time.perf_counter()
    manifest = json.loads(repolm(*arguments))
    manifest["wall_seconds"] = round(time.perf_counter() - started, 1)
    return manifest


def reused(repo: Path, name: str) -> dict | None:
    """The manifest of the adapter an earlier run trained in this copy, if it finished."""
    manifest = repo / ".repolm" / "adapters" / name / "manifest.json"
    return json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None


def copy_folder(corpus: str, base: Path | None) -> Path:
    """Where a corpus is copied, indexed and trained on: one copy per base model."""
    return HERE / ".cache" / (f"raft-{corpus}-{base.name}" if base else f"raft-{corpus}")


def write_settings(repo: Path, base: Path | None, budget: int | None = None) -> None:
    """The copy's `repolm.toml`: the base model and the completion prompt budget, where not the defaults."""
    lines = [f'model = "{base.resolve()}"'] if base else []
    lines += [f"completion_budget = {budget}"] if budget else []
    settings = repo / "repolm.toml"
    settings.unlink(missing_ok=True)
    if lines:
        settings.write_text("[serve]\n" + "".join(f"{line}\n" for line in lines), encoding="utf-8")


def run_corpus(corpus: str, args: argparse.Namespace) -> dict:
    folder = copy_folder(corpus, args.base)
    repo = folder if args.reuse and (folder / ".repolm").is_dir() else fresh_copy(corpus, folder)
    write_settings(repo, args.base)  # training builds its prompts with the base model's tokenizer
    started = time.perf_counter()
    repolm("index", str(repo), "--json")
    index_seconds = round(time.perf_counter() - started, 1)
    trained = {}
    for name in ("raft", "plain"):
        if name in args.models:
            earlier = reused(repo, name) if args.reuse else None
            trained[name] = earlier or train(repo, name, args.profile, args.steps, plain=name == "plain")
    write_settings(repo, args.base, args.budget)  # the evaluation's prompt budget, as a user would set it
    work = HERE / ".cache" / "raft-eval"  # each run's full evaluation (records, its own report)
    stem = folder.name.removeprefix("raft-")
    evaluation_file = work / f"{stem}{f'-{args.budget}' if args.budget else ''}.json"
    adapters = {name: f"--adapter={name}={repo / '.repolm' / 'adapters' / name}" for name in trained}
    started = time.perf_counter()

    def evaluate(out: Path, arms: list[str], embedding_model: str, models: list[str]) -> dict:
        earlier = finished(out, ["base"], arms) if args.reuse else None
        missing = [name for name in models if earlier is None or name not in earlier["models"]]
        if earlier is not None and not missing:
            return earlier
        extra = out.with_name(f"{out.stem}-added.json") if earlier is not None else out
        repolm(
            "eval", "--repo", str(repo), "--arms", *arms, "--limit", str(args.limit), "--explain", "0",
            "--graph", "0", "--threads", str(args.threads), "--seed", str(args.seed),
            *(adapters[name] for name in missing), *(["--no-base"] if earlier is not None else []),
            "--embedding-model", embedding_model, "--json", str(extra),
            "--report", str(extra.with_suffix("")),
        )  # fmt: skip
        evaluation = json.loads(extra.read_text(encoding="utf-8"))
        if earlier is not None:  # the adapters trained since, added to the earlier run's same targets
            evaluation = merged(earlier, evaluation)
            out.write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
        return evaluation

    evaluation = evaluate(evaluation_file, args.arms, "base", list(trained))
    # With --retriever: the same targets (same split and seed) retrieved with the fine-tuned model, for
    # the comparisons that use it (base and RAFT; the plain control has none).
    if args.retriever:
        tuned = evaluate(evaluation_file.with_name(f"{evaluation_file.stem}-tuned.json"), ["hybrid"],
                         str(args.retriever[corpus]), [m for m in trained if m != "plain"])  # fmt: skip
        for record, again in zip(evaluation["records"], tuned["records"], strict=True):
            assert (record["path"], record["line"]) == (again["path"], again["line"])
            for model, arms in again["models"].items():
                record["models"][model]["hybrid_tuned"] = arms["hybrid"]
        for model, result in tuned["models"].items():
            evaluation["models"][model]["arms"]["hybrid_tuned"] = result["arms"]["hybrid"]
    return {
        "index_seconds": index_seconds,
        "eval_seconds": round(time.perf_counter() - started, 1),
        "dataset": trained["raft"]["dataset"] if "raft" in trained else None,
        "train": {name: {**m["train"], "wall_seconds": m.get("wall_seconds")} for name, m in trained.items()},
        "targets": evaluation["targets"],
        "table": {
            model: {arm: {s: scores[s] for s in SCORES} for arm, scores in result["arms"].items()}
            for model, result in evaluation["models"].items()
        },
        "records": evaluation["records"],
    }


def merged(earlier: dict, added: dict) -> dict:
    """`earlier` with the models of `added`, an evaluation of the same targets (same split, limit, seed)."""
    for record, again in zip(earlier["records"], added["records"], strict=True):
        assert (record["path"], record["line"]) == (again["path"], again["line"]), "targets differ"
        record["models"] |= again["models"]
    earlier["models"] |= added["models"]
    earlier["gate"] |= added["gate"]
    return earlier


def finished(out: Path, models: list[str], arms: list[str]) -> dict | None:
    """The evaluation an earlier run wrote to `out`, if it holds every model on every arm asked for."""
    if not out.is_file():
        return None
    evaluation = json.loads(out.read_text(encoding="utf-8"))
    found = evaluation["models"]
    return evaluation if all(m in found and set(arms) <= set(found[m]["arms"]) for m in models) else None


def differences(records: list[dict], comparison: Comparison, score: str) -> list[float] | None:
    pairs = [(comparison.top, comparison.bottom, 1.0)]
    if comparison.baseline:
        pairs.append((*comparison.baseline, -1.0))
    values = []
    for record in records:
        if comparison.only and not record.get(comparison.only):
            continue
        models = record["models"]
        try:
            values.append(
                sum(
                    sign * (models[top][top_arm][score] - models[bottom][bottom_arm][score])
                    for (top, top_arm), (bottom, bottom_arm), sign in pairs
                )
            )
        except KeyError:
            return None  # a model or arm this run left out
    return values


def compare(corpora: dict[str, dict], seed: int) -> list[dict]:
    """Each comparison's paired differences per corpus and pooled (all corpora's targets together)."""
    rows = []
    for comparison in COMPARISONS:
        row: dict = {"name": comparison.name, "only": comparison.only, "per_corpus": {}}
        pooled: dict[str, list[float]] = {score: [] for score in SCORES}
        for corpus, result in corpora.items():
            found = {score: differences(result["records"], comparison, score) for score in SCORES}
            if any(values is None for values in found.values()):
                break
            row["per_corpus"][corpus] = {
                "n": len(found[SCORES[0]]),
                **{score: bootstrap(found[score], seed).to_json() for score in SCORES},
            }
            for score in SCORES:
                pooled[score] += found[score]
        else:
            row["pooled"] = {
                "n": len(pooled[SCORES[0]]),
                **{score: bootstrap(pooled[score], seed).to_json() for score in SCORES},
            }
            row["verdict"] = verdict(comparison, row)
            rows.append(row)
    return rows


def verdict(comparison: Comparison, row: dict) -> str | None:
    """Whether the goal on edit similarity holds: pooled mean and interval, and positive per corpus."""
    pooled = row["pooled"]["edit_similarity"]
    if comparison.goal is not None:
        met = pooled["mean"] >= comparison.goal and pooled["ci_low"] > 0
        if comparison.only:
            met = met and all(c["edit_similarity"]["mean"] > 0 for c in row["per_corpus"].values())
        return "met" if met else "not met"
    if comparison.floor is not None:
        return "met" if pooled["mean"] >= comparison.floor else "not met"
    return None


def oracle_ceiling(records: list[dict], model: str = "raft") -> dict | None:
    """How much reading retrieved oracles can give `model` with hybrid retrieval: the targets whose
    hybrid prompt carried an oracle chunk, and the hybrid − in-file edit similarity over all targets
    if each of those were completed exactly (next to what it gained on them)."""
    if not records or not {"hybrid", "oracle", "in_file"} <= set(records[0]["models"].get(model, {})):
        return None
    carried = [
        arms
        for record in records
        if record["oracle_chunks"]
        and set((arms := record["models"][model])["oracle"]["documents"]) & set(arms["hybrid"]["documents"])
    ]
    in_file = [arms["in_file"]["edit_similarity"] for arms in carried]
    hybrid = [arms["hybrid"]["edit_similarity"] for arms in carried]
    return {
        "targets": len(records),
        "oracle_targets": sum(1 for record in records if record["oracle_chunks"]),
        "oracle_in_hybrid_prompt": len(carried),
        "ceiling": round(sum(1 - value for value in in_file) / len(records), 4),
        "gained": round((sum(hybrid) - sum(in_file)) / len(records), 4),
    }


def write_html(result: dict, folder: Path, base: Path | None) -> Path:
    """The report: the score table per corpus, the paired differences as a forest plot, and the loss
    curves of the trained adapters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    rows = result["comparisons"]
    figure, axis = plt.subplots(figsize=(8, 0.5 + 0.45 * len(rows) * (len(result["corpora"]) + 1)))
    labels, y = [], 0
    for row in reversed(rows):
        for corpus, stats in [*row["per_corpus"].items(), ("pooled", row["pooled"])]:
            es = stats["edit_similarity"]
            axis.errorbar(
                es["mean"], y, xerr=[[es["mean"] - es["ci_low"]], [es["ci_high"] - es["mean"]]],
                fmt="o" if corpus == "pooled" else ".", color="black" if corpus == "pooled" else "grey",
            )  # fmt: skip
            labels.append(f"{row['name']} — {corpus} (n={stats['n']})")
            y += 1
        y += 0.5
    ticks = [i + 0.5 * (i // (len(result["corpora"]) + 1)) for i in range(len(labels))]
    axis.set_yticks(ticks, labels, fontsize=7)
    axis.axvline(0, color="red", linewidth=0.8)
    axis.set_xlabel("edit similarity difference, paired, 95% bootstrap interval")
    figure.tight_layout()
    figure.savefig(folder / "differences.png", dpi=110)
    plt.close(figure)

    curves = []
    for corpus, data in result["corpora"].items():
        for name in data["train"]:
            curve = copy_folder(corpus, base) / ".repolm" / "adapters" / name / "loss_curve.json"
            if curve.is_file():
                curves.append((f"{corpus} {name}", json.loads(curve.read_text(encoding="utf-8"))))
    if curves:
        figure, axis = plt.subplots(figsize=(7, 3.5))
        for label, points in curves:
            axis.plot([p["step"] for p in points], [p["loss"] for p in points], label=label)
        axis.set_xlabel("step")
        axis.set_ylabel("training loss")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / "loss_curves.png", dpi=110)
        plt.close(figure)

    command = html.escape(result["command"])
    parts = [f"<h1>RAFT benchmark</h1><p><code>{command}</code><br>{result['machine']}</p>"]
    for corpus, data in result["corpora"].items():
        parts.append(f"<h2>{corpus}</h2><p>{data['targets']['n']} targets, {data['targets']['with_oracle']}"
                     f" with oracle chunks, {data['targets']['oracle_supplies']} whose oracle supplies a name"
                     " the file lacks</p><table border=1 cellpadding=3><tr><th>model</th><th>arm</th>"
                     + "".join(f"<th>{s}</th>" for s in SCORES) + "</tr>")  # fmt: skip
        for model, arms in data["table"].items():
            for arm, scores in arms.items():
                cells = "".join(
                    f"<td>{v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]</td>"
                    for v in scores.values()
                )
                parts.append(f"<tr><td>{model}</td><td>{arm}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append('<h2>Paired differences</h2><img src="differences.png">')
    if curves:
        parts.append('<h2>Training loss</h2><img src="loss_curves.png">')
    page = folder / "index.html"
    page.write_text("<html><body>" + "\n".join(parts) + "</body></html>\n", encoding="utf-8")
    return page


def retrievers(parser: argparse.ArgumentParser, values: list[str], corpora: list[str]) -> dict[str, Path]:
    """`--retriever` as corpus → folder: CORPUS=FOLDER for each corpus, or none."""
    pairs = [value.partition("=") for value in values]
    found = {corpus: Path(folder) for corpus, equals, folder in pairs if equals and folder}
    if len(found) != len(values) or (values and set(found) != set(corpora)):
        parser.error("--retriever takes CORPUS=FOLDER for every corpus")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", nargs="+", default=list(DEFAULT_CORPORA))
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--steps", type=int, help="training steps (default: the profile's)")
    parser.add_argument("--limit", type=int, default=150, help="completion targets per corpus")
    parser.add_argument("--models", nargs="+", default=["base", "plain", "raft"])
    parser.add_argument("--arms", nargs="+", default=["in_file", "hybrid", "oracle"])
    parser.add_argument("--threads", type=int, default=2, help="inference threads for the evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep each corpus's copy, the adapters and the evaluations an earlier run finished there"
        " (bench/.cache/raft-eval: delete them after changing the retriever); add only the models they lack",
    )
    parser.add_argument(
        "--budget", type=int, help="the evaluation's completion prompt budget (default: the serving default)"
    )
    parser.add_argument(
        "--retriever",
        nargs="+",
        default=[],
        metavar="CORPUS=FOLDER",
        help="also run the hybrid arm with each corpus's fine-tuned sentence-transformers folder"
        " (arm hybrid_tuned)",
    )
    parser.add_argument(
        "--base",
        type=Path,
        metavar="FOLDER",
        help="train and evaluate this base model (a local Hugging Face folder) instead of the embedded one",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "raft.json")
    args = parser.parse_args()
    args.retriever = retrievers(parser, args.retriever, args.corpora)
    command = " ".join(["python", "bench/bench_raft.py", *sys.argv[1:]])
    corpora = {corpus: run_corpus(corpus, args) for corpus in args.corpora}
    pooled_records = [record for data in corpora.values() for record in data["records"]]
    result = {
        "command": command,
        "machine": machine(),
        "base_model": str(args.base) if args.base else "embedded",
        "corpora": {
            name: {
                **{key: value for key, value in data.items() if key != "records"},
                "oracle_ceiling": oracle_ceiling(data["records"]),
            }
            for name, data in corpora.items()
        },
        "oracle_ceiling": oracle_ceiling(pooled_records),
        "comparisons": compare(corpora, args.seed),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    page = write_html(result, args.out.with_name(f"{args.out.stem}_report"), args.base)
    for row in result["comparisons"]:
        es, n = row["pooled"]["edit_similarity"], row["pooled"]["n"]
        em = row["pooled"]["exact_match"]
        print(f"{row['name']:<34} pooled n={n:<4} edit similarity {es['mean']:+.4f}"
              f" [{es['ci_low']:+.4f}, {es['ci_high']:+.4f}]  exact match {em['mean']:+.4f}"
              f"  {row['verdict'] or ''}")  # fmt: skip
    print(f"reading retrieved oracles, RAFT: {result['oracle_ceiling']}")
    print(f"results: {args.out}\nreport: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
