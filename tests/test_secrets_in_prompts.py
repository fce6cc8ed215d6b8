"""No secret of the repository or of an open buffer reaches a model's prompt or what explain and ask
show: real index, real model, real engine (the completion core's own test is in test_server_cores)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from conftest import write_tree

from repolm.config import Config
from repolm.indexer.builder import update_index
from repolm.indexer.code_graph import RelationPath
from repolm.indexer.secrets import REDACTION_MARKER

SETTINGS = '''"""Settings of the app."""

DB_URL = "postgresql://admin:S3cr3t!Pw0rd@db.internal/app"


def connect(timeout=30):
    """Open a connection to the database."""
    # AKIAIOSFODNN7EXAMPLE
    # wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
    return open_db(DB_URL, timeout)
'''
REPORT = '''from app.settings import connect


def report():
    """The nightly report."""
    db = connect(timeout=5)  # psql postgresql://report:R3p0rt!Pw@db.internal/app
    return db
'''
# The open buffer has an unsaved token in the definition, on a line the index holds without it.
BUFFER = SETTINGS.replace(
    "return open_db(DB_URL, timeout)",
    'return open_db(DB_URL, timeout, "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R")',
)
SECRET_PIECES = ("S3cr3t", "Pw0rd", "R3p0rt", "AKIAIOSFODNN7", "wJalrXUtnFEMI", "K7MDENG", "1a2B3c4D")
QUESTION_SECRET = "Tr0ub4dor&3horse"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedder):
    from repolm.assist.engine import Engine

    root = write_tree(
        tmp_path_factory.mktemp("secrets"), {"app/settings.py": SETTINGS, "app/report.py": REPORT}
    )
    config = Config()
    config = replace(config, serve=replace(config.serve, explain_max_tokens=2))
    update_index(root, config, embedder=embedder)
    return Engine(root, config)


def assert_no_secret(text: str) -> None:
    assert all(piece not in text for piece in SECRET_PIECES), text


def test_explain_prompt_sources_and_card_hold_no_secret(engine) -> None:
    symbol = engine.symbol_named("app.settings.connect")
    explanation = engine.explain(symbol, "app/settings.py", {"app/settings.py": BUFFER})
    received = engine.model().tokenizer.decode(engine.model()._prompt_caches.entries[-1].ids)
    # The definition (from the buffer) and the caller's lines are in the prompt, their secrets are not.
    assert "def connect(timeout=30):" in received and "db = connect(timeout=5)" in received
    assert received.count(REDACTION_MARKER) >= 4
    assert_no_secret(received)
    assert_no_secret(explanation.markdown())
    assert_no_secret(str(explanation.to_json()))
    assert_no_secret("".join(source.text for source in explanation.sources))


def test_card_of_a_url_constant_keeps_the_url_but_not_its_password(engine) -> None:
    card = engine.explain(engine.symbol_named("DB_URL"), with_model=False).card
    assert f'"postgresql://admin:{REDACTION_MARKER}@db.internal/app"' in card.markdown()
    assert_no_secret(card.markdown() + str(card.to_json()))


def test_ask_plans_from_the_question_without_its_secret(engine) -> None:
    from repolm.assist.ask import answer
    from repolm.assist.plan import RankedPlan

    asked: list[str] = []

    def planner(text: str, name: str, options: Sequence[RelationPath]) -> list[RankedPlan]:
        asked.append(text)
        return [RankedPlan(("called_by",), 0.0)]

    question = f'Who calls connect when password = "{QUESTION_SECRET}"?'
    result = answer(engine.code_graph(), question, planner)
    assert asked == [f'Who calls connect when password = "{REDACTION_MARKER}"?']
    assert result.entities == ("app.report.report",)
    assert QUESTION_SECRET not in str(result.to_json(engine.code_graph()))
