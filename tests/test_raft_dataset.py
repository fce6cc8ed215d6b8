"""The RAFT dataset builder on a real index of a fixture repository (real tokenizer, real retrieval)."""

from __future__ import annotations

import dataclasses
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from raft_fixture import HELD_OUT_FILE, TRAINING_FILES, write_fixture_repo

from repolm.assist.completion import Completer, CompletionRequest, retrieval_query
from repolm.assist.engine import code_hits
from repolm.config import ServeConfig, load_config
from repolm.model import load_model
from repolm.prompt import Document, PromptRequest, build_prompt
from repolm.training.eval_split import is_held_out
from repolm.training.eval_targets import cursor_prefix
from repolm.training.raft_dataset import RaftConfig, build_dataset, read_jsonl, write_jsonl
from repolm.training.raft_explain import ANSWER, quoted_spans
from repolm.training.teacher import Teacher

P = 0.8
CONFIG = RaftConfig(oracle_probability=P, completion_examples=100, explain_examples=30, plan_examples=20)
SERVE = ServeConfig(completion_budget=384, explain_budget=384)


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder):
    from transformers import AutoTokenizer

    from repolm.indexer.builder import update_index
    from repolm.indexer.retrieval import Index
    from repolm.model import ensure_converted

    root = write_fixture_repo(tmp_path_factory.mktemp("raft") / "repo")
    config = load_config(root)
    update_index(root, config, embedder=embedder)
    index = Index.open(root, config, embedder)
    tokenizer = AutoTokenizer.from_pretrained(ensure_converted(), local_files_only=True)
    examples, stats = build_dataset(index, tokenizer, CONFIG, SERVE)
    yield index, tokenizer, examples, stats, root
    index.close()


def test_fixture_split_is_as_expected():
    assert is_held_out(HELD_OUT_FILE)
    assert not any(is_held_out(path) for path in TRAINING_FILES)


def test_no_example_or_document_from_the_evaluation_split(built):
    _, _, examples, stats, _ = built
    assert stats.held_out_files == 1 and examples
    for example in examples:
        assert not is_held_out(example.path)
        assert all(not is_held_out(d["path"]) for d in example.documents)
        assert "nightly_job_total" not in example.prompt + example.completion


def test_oracle_share_matches_p(built):
    _, _, examples, stats, _ = built
    available = [e for e in examples if e.oracle_available]
    assert len(available) >= 60
    share = sum(e.oracle_included for e in available) / len(available)
    assert abs(share - P) < 0.12, share
    assert stats.oracle_share == pytest.approx(share, abs=1e-3)
    assert any(not e.oracle_included for e in available)  # RAFT's distractor-only share exists


def test_oracles_define_the_used_symbols_and_distractors_do_not(built):
    index, _, examples, _, _ = built
    checked = 0
    for example in (e for e in examples if e.task == "complete" and e.symbols):
        definitions = [index.graph.by_qualname(q) for q in example.symbols]
        places = [(s.path, s.name_line) for s in definitions if s is not None]

        for document in example.documents:
            first, last = document["start_line"], document["end_line"]
            defines = any(document["path"] == p and first <= n <= last for p, n in places)
            assert defines == document["oracle"], (example.id, document["symbol"])
            assert document["path"] != example.path  # never the target's own file
        checked += 1
    assert checked >= 50


def test_hard_distractors_are_what_the_server_retrieves_at_the_cursor(built):
    """Distractors come from the ranking a completion is served with (the query fused with the definitions
    the code above the cursor uses), so the model learns to pick the oracle out of the snippets it will
    be handed beside it; the query's ranking alone misses some of them."""
    index, _, examples, _, root = built
    depth = CONFIG.distractors + 8
    served_only = 0
    checked = 0
    for example in [e for e in examples if e.task == "complete"]:
        text = (root / example.path).read_text()
        prefix = cursor_prefix(text, example.line, len(example.prefix.rsplit("\n", 1)[-1]))
        query = retrieval_query(prefix)
        hidden = frozenset({HELD_OUT_FILE})
        served = {
            (h.chunk.path, h.chunk.start_line)
            for h in code_hits(index, query, example.path, depth, SERVE, "hybrid", prefix, hidden)
        }
        plain = {
            (h.chunk.path, h.chunk.start_line)
            for h in code_hits(index, query, example.path, depth, SERVE, "hybrid", "", hidden)
        }
        distractors = [(d["path"], d["start_line"]) for d in example.documents if not d["oracle"]]
        # Every distractor but the one random chunk is from the served ranking.
        assert sum(place not in served for place in distractors) <= 1, (example.path, example.line)
        served_only += any(place in served - plain for place in distractors)
        checked += 1
    assert checked >= 50
    assert served_only >= 5


def test_cursors_where_only_the_oracle_shows_a_name_are_taken_first(built):
    index, tokenizer, examples, _, _ = built
    supplying = [e for e in examples if e.task == "complete" and e.oracle_supplies]
    assert supplying, "the fixture must have lines that need their oracle"
    for example in supplying:
        oracle_text = "".join(d["text"] for d in example.documents if d["oracle"])
        for name in example.oracle_supplies:
            assert name in example.answer and name not in example.prefix
            assert not example.oracle_included or name in oracle_text
    # With room for fewer completions than there are such cursors, all chosen with an oracle are such.
    room = len(supplying) // 2
    few = dataclasses.replace(CONFIG, completion_examples=room, no_oracle_share=0.0, explain_examples=0)
    few = dataclasses.replace(few, plan_examples=0)
    chosen, stats = build_dataset(index, tokenizer, few, SERVE)
    completions = [e for e in chosen if e.task == "complete" and e.oracle_available]
    assert completions and all(e.oracle_supplies for e in completions)
    assert stats.oracle_supplies == len(completions)


def test_every_quote_is_verbatim_in_its_documents_and_abstentions_lack_the_oracle(built):
    _, _, examples, _, _ = built
    explains = [e for e in examples if e.task == "explain"]
    assert explains and any(e.abstain for e in explains) and any(not e.abstain for e in explains)
    for example in explains:
        assert example.answer.rsplit("\n", 1)[-1].startswith(ANSWER)
        texts = [d["text"] for d in example.documents]
        for quote in quoted_spans(example.answer):
            assert quote.strip() and any(quote in text for text in texts), quote
        if example.abstain:
            assert not quoted_spans(example.answer)
            assert "sources do not contain" in example.answer
        else:
            assert example.quotes and example.source_spans


def test_prompts_are_the_serving_prompts(built):
    """train = serve: the stored prompt is what build_prompt makes from the stored documents and prefix."""
    _, tokenizer, examples, _, _ = built
    for example in [e for e in examples if e.task == "complete"][:15]:
        documents = [
            Document(d["path"], d["start_line"], d["end_line"], d["text"], d["symbol"])
            for d in example.documents
        ]
        request = PromptRequest("complete", documents, prefix=example.prefix, path=example.path)
        prompt = build_prompt(request, tokenizer, SERVE.completion_budget)
        assert prompt.text == example.prompt
        assert example.completion.startswith(prompt.healed + example.answer + "\n")


def test_the_server_sends_the_training_prompt_byte_for_byte(built):
    """train = serve end to end: at an example's cursor, with the example's documents retrieved, the real
    completer (redaction, query, snippet fitting, budget and all) hands the model the example's prompt."""
    _, _, examples, _, root = built
    model = load_model(device="cpu")
    serve = dataclasses.replace(SERVE, completion_max_tokens=1, completion_cache_size=0)
    checked = 0
    for example in [e for e in examples if e.task == "complete" and e.documents][:12]:
        documents = [
            Document(d["path"], d["start_line"], d["end_line"], d["text"], d["symbol"])
            for d in example.documents
        ]
        completer = Completer(model, serve, lambda query, path, prefix, k, found=documents: found[:k])
        text = (root / example.path).read_text()
        column = len(example.prefix.rsplit("\n", 1)[-1])
        completer.complete(CompletionRequest(example.path, text, example.line - 1, column))
        expected = model.tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
        served = model._prompt_caches.entries[-1].ids[: len(expected)]
        assert served == expected, (example.path, example.line)
        assert model.tokenizer.decode(served) == example.prompt
        checked += 1
    assert checked >= 10


def test_completions_end_on_the_newline_token_the_file_has(built):
    """The answer's closing newline is the token the file's own tokenization has there (a newline merged
    with the next line's indentation), not a bare newline, which code has only before an unindented
    line or at a file's end."""
    _, tokenizer, examples, _, root = built
    merged = 0
    for example in [e for e in examples if e.task == "complete"]:
        answered = example.completion.rsplit(example.answer, 1)
        end = answered[-1]
        assert len(answered) == 2 and end.startswith("\n") and not end.strip(), repr(end)
        text = (root / example.path).read_text()
        assert example.answer + end in text, (example.path, example.line)
        ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids[-1:]) == end
        merged += end != "\n"
    assert merged >= 10


def test_plan_examples_target_paths_that_reach_the_answers(built):
    """RoG planning: about training-split symbols only; the target's relation paths reach the answers, and
    are among the options the graph-constrained planner chooses from when serving."""
    index, tokenizer, examples, _, _ = built
    from repolm.assist.plan import MAX_HOPS
    from repolm.indexer.code_graph import RELATIONS, CodeGraph
    from repolm.prompt import PLAN_SEPARATOR, plan_completion

    graph = CodeGraph.build(index)
    plans = [e for e in examples if e.task == "plan"]
    assert len(plans) >= 5 and {e.kind for e in plans} >= {"callers", "callees"}
    for example in plans:
        (entity,) = example.symbols
        assert graph.nodes[entity].path == example.path and not is_held_out(example.path)
        planned = [tuple(line.split(PLAN_SEPARATOR)) for line in example.answer.splitlines()]
        assert planned and example.completion == plan_completion(planned, tokenizer)
        assert example.completion == example.answer + tokenizer.eos_token
        assert all(graph.follow(entity, plan) for plan in planned)
        assert set(planned) <= set(graph.relation_paths(entity, MAX_HOPS))
        request = PromptRequest("plan", (), question=example.question, relations=RELATIONS)
        assert build_prompt(request, tokenizer, 256).text == example.prompt


def test_secrets_filtered_deduplicated_and_jsonl_stable(built, tmp_path):
    _, _, examples, _, _ = built
    out = tmp_path / "data.jsonl"
    first = write_jsonl(examples, out)
    assert write_jsonl(examples, tmp_path / "again.jsonl") == first
    text = out.read_text(encoding="utf-8")
    for secret in (
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "S3cr3t!Pw0rd",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ):
        assert secret not in text
    assert "postgresql://admin:[REDACTED]@db.internal/backup" in text  # the store's file is in the rows
    rows = read_jsonl(out)
    assert len({row["id"] for row in rows}) == len(rows) == len(examples)
    for field in ("id", "task", "documents", "answer", "source_spans", "prompt", "completion"):
        assert field in rows[0]


class _ChatHandler(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatHandler.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        reply = {"choices": [{"message": {"role": "assistant", "content": "Step. <ANSWER>: adds"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return


def test_teacher_client_talks_to_an_openai_compatible_endpoint(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("RAFT_TEST_KEY", "secret-value")
        teacher = Teacher(f"http://127.0.0.1:{server.server_port}/v1", "tiny", "RAFT_TEST_KEY")
        assert teacher.answer("Sources: ...") == "Step. <ANSWER>: adds"
        request = _ChatHandler.seen[-1]
        assert request["path"] == "/v1/chat/completions"
        assert request["auth"] == "Bearer secret-value"
        assert (
            request["body"]["model"] == "tiny"
            and request["body"]["messages"][-1]["content"] == "Sources: ..."
        )
    finally:
        server.shutdown()
    assert Teacher(f"http://127.0.0.1:{server.server_port}/v1", "tiny", timeout=2).answer("x") is None


def test_fixture_writes_into_a_fresh_folder(tmp_path: Path):
    root = write_fixture_repo(tmp_path)
    assert (root / HELD_OUT_FILE).is_file()
