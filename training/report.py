"""A self-contained HTML report of an evaluation JSON: tables, plus matplotlib figures inlined as PNG.

Reads only the JSON document (docs/EVAL_SCHEMA.md) and, for the loss curves, the adapter folders it
names: a `loss.jsonl` (one {"step": int, "loss": float} per line) or the Hugging Face Trainer's
`trainer_state.json` (its `log_history`).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt

REPORT_NAME = "eval_report.html"
SCORES = (
    ("exact_match", "exact match"),
    ("edit_similarity", "edit similarity"),
    ("identifier_f1", "identifier F1"),
)
COLUMNS = ("arm", "EM", "EM 95% CI", "edit sim", "ident F1", "acc@1", "acc@5", "MRR", "p50 ms", "p95 ms")


def loss_curve(adapter: str | None) -> list[tuple[float, float]]:
    """(step, loss) points written by training into the adapter folder; empty when there are none."""
    if not adapter:
        return []
    folder = Path(adapter)
    points: list[tuple[float, float]] = []
    try:
        if (folder / "loss.jsonl").is_file():
            for line in (folder / "loss.jsonl").read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    points.append((float(entry["step"]), float(entry["loss"])))
        elif (folder / "trainer_state.json").is_file():
            state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
            for entry in state.get("log_history", []):
                if "loss" in entry and "step" in entry:
                    points.append((float(entry["step"]), float(entry["loss"])))
    except (OSError, ValueError, KeyError, TypeError):
        return []  # a malformed loss file must not cost the whole report
    return points


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def scores_figure(result: dict) -> str:
    """One panel per score: a bar per arm and model, with its bootstrap 95% CI."""
    models, arms = list(result["models"]), result["arms"]
    figure, axes = plt.subplots(1, len(SCORES), figsize=(5 * len(SCORES), 3.6), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for axis, (key, label) in zip(axes[0], SCORES, strict=True):
        for offset, name in enumerate(models):
            stats = [result["models"][name]["arms"][arm][key] for arm in arms]
            means = [s["mean"] or 0.0 for s in stats]
            errors = [
                [max(m - (s["ci_low"] or m), 0.0) for m, s in zip(means, stats, strict=True)],
                [max((s["ci_high"] or m) - m, 0.0) for m, s in zip(means, stats, strict=True)],
            ]
            positions = [i + offset * width - 0.4 + width / 2 for i in range(len(arms))]
            axis.bar(positions, means, width, yerr=errors, capsize=3, label=name)
        axis.set_xticks(range(len(arms)), arms, rotation=20)
        axis.set_ylim(0, 1)
        axis.set_title(label)
    axes[0][0].legend(fontsize=8)
    return _png(figure)


def latency_figure(result: dict) -> str:
    """Completion latency per arm (the first model), as box plots over targets."""
    name = next(iter(result["models"]))
    arms = result["arms"]
    samples = [[r["models"][name][arm]["latency_ms"] for r in result["records"]] for arm in arms]
    figure, axis = plt.subplots(figsize=(7, 3.6))
    axis.boxplot(samples, showfliers=True)
    axis.set_xticks(range(1, len(arms) + 1), arms)
    axis.set_ylabel("ms per completion")
    axis.set_title(f"completion latency ({name})")
    return _png(figure)


def loss_figure(curves: dict[str, list[tuple[float, float]]]) -> str:
    figure, axis = plt.subplots(figsize=(7, 3.6))
    for name, points in curves.items():
        axis.plot([p[0] for p in points], [p[1] for p in points], label=name)
    axis.set_xlabel("step")
    axis.set_ylabel("training loss")
    axis.legend()
    return _png(figure)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _ci(stats: dict) -> str:
    return f"{_fmt(stats['mean'])} <small>[{_fmt(stats['ci_low'])}, {_fmt(stats['ci_high'])}]</small>"


def _arm_table(name: str, model: dict, arms: list[str]) -> str:
    head = (
        "<tr><th>arm</th><th>n</th><th>exact match</th><th>edit similarity</th><th>identifier F1</th>"
        "<th>acc@1</th><th>acc@5</th><th>MRR</th><th>p50 ms</th><th>p95 ms</th></tr>"
    )
    rows = []
    for arm in arms:
        s = model["arms"][arm]
        retrieval = s["retrieval"] or {}
        cells = [
            arm,
            str(s["n"]),
            _ci(s["exact_match"]),
            _ci(s["edit_similarity"]),
            _ci(s["identifier_f1"]),
            _fmt(retrieval.get("acc@1")),
            _fmt(retrieval.get("acc@5")),
            _fmt(retrieval.get("mrr")),
            _fmt(s["latency_ms"]["p50"], 0),
            _fmt(s["latency_ms"]["p95"], 0),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    adapter = html.escape(model["adapter"] or "none")
    notes = (
        f"oracle-gap closure (hybrid − in-file) / (oracle − in-file): {_fmt(model['oracle_gap_closure'])}; "
        f"hybrid / in-file exact match: {_fmt(model['hybrid_over_in_file'])}"
    )
    difference = model.get("hybrid_minus_in_file")
    if difference:
        paired = ", ".join(f"{name.replace('_', ' ')} {_ci(difference[name])}" for name in difference)
        notes += f"; hybrid − in-file, paired over targets: {paired}"
    title = f"<h2>{html.escape(name)} <small>(adapter: {adapter})</small></h2>"
    return f"{title}<table>{head}{''.join(rows)}</table><p>{notes}</p>"


def _table(title: str, headers: list[str], rows: list[list[object]]) -> str:
    """An HTML section with one table; nothing when there are no rows."""
    if not rows:
        return ""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>" for cells in rows)
    return f"<h2>{title}</h2><table>{head}{body}</table>"


def _explain_table(models: dict) -> str:
    rows = [
        [
            name,
            e["n"],
            e["cites_definition"],
            e["citation_precision"],
            e["quotes_verbatim"],
            e["unknown_identifiers"],
        ]
        for name, model in models.items()
        if (e := model.get("explain"))
    ]
    headers = ["model", "n", "cites definition", "citation precision", "quotes verbatim"]
    return _table("Explanations", [*headers, "unknown identifiers"], rows)


def _graph_table(models: dict) -> str:
    rows = [
        [
            name,
            method,
            g["n"],
            m["hits@1"]["mean"],
            m["f1"]["mean"],
            m["relational_f1"]["mean"],
            m["latency_ms"]["p50"],
            g["path_validity"] if method == "graph" else None,
        ]
        for name, model in models.items()
        if (g := model.get("graph"))
        for method, m in g["methods"].items()
    ]
    headers = ["model", "answers from", "questions", "Hits@1", "F1"]
    headers += ["F1 (callers, implementers, overrides, tests)", "p50 ms", "valid paths"]
    return _table("Graph questions", headers, rows)


def render_html(result: dict) -> str:
    split = result["split"]
    targets = result["targets"]
    curves = {name: loss_curve(m["adapter"]) for name, m in result["models"].items()}
    curves = {name: points for name, points in curves.items() if points}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>repolm evaluation</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}small{color:#666}"
        "</style></head><body><h1>repolm evaluation</h1>",
        f"<p>{html.escape(result['repo']['root'])} at {_fmt(result['repo']['commit'])}, "
        f"index generation {result['repo']['index_generation']}; split {html.escape(json.dumps(split))}; "
        f"{targets['n']} targets {html.escape(json.dumps(targets['by_kind']))}, {targets['with_oracle']} "
        f"with oracle chunks; seed {result['seed']}; created {html.escape(result['created'])}.</p>",
    ]
    parts += [_arm_table(name, model, result["arms"]) for name, model in result["models"].items()]
    if targets["n"]:
        parts += ["<h2>Scores (95% bootstrap CI)</h2>", scores_figure(result)]
        parts += ["<h2>Latency</h2>", latency_figure(result)]
    if curves:
        parts += ["<h2>Training loss</h2>", loss_figure(curves)]
    parts += [_explain_table(result["models"]), _graph_table(result["models"]), "</body></html>"]
    return "\n".join(parts)


def write_report(result: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_NAME
    path.write_text(render_html(result), encoding="utf-8")
    return path


def print_summary(result: dict) -> None:
    """The arms table of each model on the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for name, model in result["models"].items():
        table = Table(title=f"repolm eval — {name} ({result['targets']['n']} targets)")
        for column in COLUMNS:
            table.add_column(column, justify="right")
        for arm in result["arms"]:
            s = model["arms"][arm]
            retrieval = s["retrieval"] or {}
            table.add_row(
                arm,
                _fmt(s["exact_match"]["mean"]),
                f"[{_fmt(s['exact_match']['ci_low'])}, {_fmt(s['exact_match']['ci_high'])}]",
                _fmt(s["edit_similarity"]["mean"]),
                _fmt(s["identifier_f1"]["mean"]),
                _fmt(retrieval.get("acc@1")),
                _fmt(retrieval.get("acc@5")),
                _fmt(retrieval.get("mrr")),
                _fmt(s["latency_ms"]["p50"], 0),
                _fmt(s["latency_ms"]["p95"], 0),
            )
        console.print(table)
        console.print(
            f"oracle-gap closure: {_fmt(model['oracle_gap_closure'])}   "
            f"hybrid / in-file EM: {_fmt(model['hybrid_over_in_file'])}"
        )
        difference = model.get("hybrid_minus_in_file")
        if difference:
            console.print(
                "hybrid − in-file, paired over targets: "
                + "   ".join(
                    f"{name} {stats['mean']:+.4f} [{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}]"
                    for name, stats in difference.items()
                )
            )
        if model.get("graph"):
            g = model["graph"]
            for method, m in g["methods"].items():
                console.print(
                    f"graph questions (n={g['n']}) answered by {method}: Hits@1 {_fmt(m['hits@1']['mean'])},"
                    f" F1 {_fmt(m['f1']['mean'])}, relational F1 {_fmt(m['relational_f1']['mean'])},"
                    f" p50 {_fmt(m['latency_ms']['p50'], 0)} ms"
                )
            console.print(f"valid paths: {_fmt(g['path_validity'])} of {g['paths_shown']} shown")
        if model.get("explain"):
            e = model["explain"]
            console.print(
                f"explain (n={e['n']}): cites definition {_fmt(e['cites_definition'])}, citation precision "
                f"{_fmt(e['citation_precision'])}, quotes verbatim {_fmt(e['quotes_verbatim'])}, "
                f"unknown identifiers {e['unknown_identifiers']}"
            )
