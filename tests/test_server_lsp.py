"""End to end: a real `repolm serve` over stdio, a real index of a fixture repository, the real model.

One server serves the whole module (loading the model and the embedder dominates); the tests run in
file order, and the last one edits the repository.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytest_lsp
from conftest import write_tree
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from shop_fixture import CHECKOUT, DEF_LINE, FILES, PRICING, explain_streamed, start_session

from repolm.server.lsp import in_thread

pytestmark = pytest.mark.asyncio(loop_scope="module")

CURSOR = types.Position(line=12, character=len("    total = apply_"))
USE = types.Position(line=6, character=len("    discounted = apply_d"))  # on a call of apply_discount


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "repolm.cli", "serve"]),
)
async def client(lsp_client: LanguageClient, tmp_path_factory: pytest.TempPathFactory):
    await start_session(lsp_client, write_tree(tmp_path_factory.mktemp("shop"), FILES))
    yield
    await lsp_client.shutdown_session()


def uri(client: LanguageClient, relative: str) -> str:
    return (client.root / relative).as_uri()  # type: ignore[attr-defined]


def open_document(client: LanguageClient, relative: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri(client, relative), language_id="python", version=version, text=text)
        )
    )


async def test_completion_uses_a_function_defined_in_another_file(client: LanguageClient) -> None:
    open_document(client, "app/checkout.py", CHECKOUT)
    result = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(uri(client, "app/checkout.py")), CURSOR)
    )
    assert isinstance(result, types.CompletionList) and result.items
    edit = result.items[0].text_edit
    assert isinstance(edit, types.TextEdit)
    assert edit.range == types.Range(CURSOR, CURSOR)
    # The cursor is after "apply_": the line must read apply_discount(...) once inserted.
    line = "    total = apply_" + edit.new_text
    assert "apply_discount(" in line, line
    assert "\n" not in edit.new_text


async def test_inline_completion_answers_the_same_insertion(client: LanguageClient) -> None:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(uri(client, "app/checkout.py")),
            position=CURSOR,
        )
    )
    assert isinstance(result, types.InlineCompletionList) and result.items
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.startswith("discount(")
    assert item.range == types.Range(CURSOR, CURSOR)


async def test_hover_cites_the_definition_in_the_other_file(client: LanguageClient) -> None:
    result = await client.text_document_hover_async(
        types.HoverParams(types.TextDocumentIdentifier(uri(client, "app/checkout.py")), USE)
    )
    assert result is not None and isinstance(result.contents, types.MarkupContent)
    text = result.contents.value
    assert f"util/pricing.py:{DEF_LINE}" in text
    assert "def apply_discount(price, percent):" in text
    assert "app/checkout.py:7" in text  # the use site


async def test_explain_command_by_position_and_by_name(client: LanguageClient) -> None:
    by_position = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="repolm.explain", arguments=[uri(client, "app/checkout.py"), USE.line, USE.character]
        )
    )
    assert by_position["card"]["location"] == f"util/pricing.py:{DEF_LINE}"
    assert by_position["card"]["callers"] == ["app/checkout.py:7"]
    assert isinstance(by_position["explanation"], str) and by_position["explanation"]
    by_name = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repolm.explain", arguments=[{"symbol": "add_tax"}])
    )
    assert by_name["card"]["location"] == "util/pricing.py:9"
    missing = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repolm.explain", arguments=["no_such_symbol_anywhere"])
    )
    assert missing["card"] is None and "no definition" in missing["explanation"]
    # The hover's graph paths: checked edges of the code graph (the call, the doc section naming it).
    assert by_name["paths"] == [
        "util.pricing.add_tax --called_by--> app.checkout.checkout_total (app/checkout.py:4)",
        "util.pricing.add_tax --documented_in--> docs/pricing.md#Pricing (docs/pricing.md:1)",
    ]


async def test_an_explanation_streams_to_a_client_that_gives_a_token(client: LanguageClient) -> None:
    answer, texts = await explain_streamed(client, "checkout_total")
    assert answer["card"]["location"] == "app/checkout.py:4" and answer["explanation"]
    assert texts and texts[-1].strip()  # the model's text as it was written, before verification


async def test_ask_command_answers_with_the_json_contract(client: LanguageClient) -> None:
    answer = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repolm.ask", arguments=["What calls add_tax?"])
    )
    assert answer["subject"] == "util.pricing.add_tax" and isinstance(answer["answer"], str)
    for path in answer["paths"]:  # the base model may plan nothing; whatever it shows is a real edge
        assert path[0]["source"] == "util.pricing.add_tax"
    with pytest.raises(Exception, match="needs a question"):
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="repolm.ask", arguments=[{"question": 3}])
        )


async def test_search_command(client: LanguageClient) -> None:
    hits = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repolm.search", arguments=["apply_discount", 3, "bm25"])
    )
    assert 1 <= len(hits) <= 3
    assert hits[0]["path"] == "util/pricing.py" and hits[0]["start_line"] == DEF_LINE
    with pytest.raises(Exception, match="k must be"):
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="repolm.search", arguments=["x", "many"])
        )


async def test_did_save_reindexes_and_picks_up_a_new_function(client: LanguageClient) -> None:
    path = client.root / "util/pricing.py"  # type: ignore[attr-defined]
    path.write_text(PRICING + "\n\ndef round_cents(amount):\n    return round(amount, 2)\n")
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(path.as_uri()))
    )
    for _ in range(120):
        hits = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="repolm.search", arguments=["round_cents", 1, "bm25"])
        )
        if hits and hits[0]["symbol"].endswith("round_cents"):
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail("the saved function never reached the index")
    card = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repolm.explain", arguments=[{"symbol": "round_cents"}])
    )
    assert card["card"]["location"] == f"util/pricing.py:{len(PRICING.splitlines()) + 3}"


async def test_bad_positions_and_documents_get_errors_not_a_crash(client: LanguageClient) -> None:
    with pytest.raises(Exception, match="outside the document"):
        await client.text_document_completion_async(
            types.CompletionParams(
                types.TextDocumentIdentifier(uri(client, "app/checkout.py")), types.Position(999, 0)
            )
        )
    with pytest.raises(Exception, match="not an open document"):
        await client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri(client, "nope.py")), types.Position(0, 0))
        )
    hits = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="repolm.search", arguments=["apply_discount"])
    )
    assert hits  # still serving


async def test_documents_outside_the_workspace_are_refused(
    client: LanguageClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = client.root  # type: ignore[attr-defined]
    secret = tmp_path_factory.mktemp("outside") / "secret.py"
    secret.write_text("PASSWORD = 'hunter2'\nvalue = PASS\n")
    link = root / "app" / "linked.py"  # inside the workspace, pointing out of it
    link.symlink_to(secret)
    here = types.Position(line=1, character=len("value = PASS"))
    targets = [
        "file:///etc/passwd",
        secret.as_uri(),
        f"{root.as_uri()}/../{secret.parent.name}/secret.py",
        link.as_uri(),
    ]
    try:
        for target in targets:
            document = types.TextDocumentIdentifier(target)
            with pytest.raises(Exception, match="outside the workspace"):
                await client.text_document_completion_async(types.CompletionParams(document, here))
            with pytest.raises(Exception, match="outside the workspace"):
                await client.text_document_hover_async(types.HoverParams(document, here))
            with pytest.raises(Exception, match="outside the workspace"):
                await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(command="repolm.explain", arguments=[target, 1, 8])
                )
        # The editor's open buffer of an outside file is refused as well, whatever its text.
        opened = types.TextDocumentItem(secret.as_uri(), "python", version=1, text="value = PASS\n")
        client.text_document_did_open(types.DidOpenTextDocumentParams(opened))
        inline = types.InlineCompletionParams(
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            text_document=types.TextDocumentIdentifier(secret.as_uri()),
            position=types.Position(line=0, character=len("value = PASS")),
        )
        with pytest.raises(Exception, match=re.escape(f"{secret} is outside the workspace ({root})")):
            await client.text_document_inline_completion_async(inline)
    finally:
        link.unlink()


async def test_fixture_files_are_where_the_tests_expect(tmp_path: Path) -> None:
    root = write_tree(tmp_path, FILES)
    lines = (root / "util/pricing.py").read_text().splitlines()
    assert lines[DEF_LINE - 1].startswith("def apply_discount(")
    assert CHECKOUT.splitlines()[CURSOR.line][: CURSOR.character] == "    total = apply_"
    assert CHECKOUT.splitlines()[USE.line][USE.character - 1] == "d"


async def test_cli_explain_and_complete_use_the_same_cores(client: LanguageClient) -> None:
    root = client.root  # type: ignore[attr-defined]  # indexed by the server above
    explain = subprocess.run(
        [
            sys.executable,
            "-m",
            "repolm.cli",
            "explain",
            "apply_discount",
            "--card-only",
            "--json",
            "--repo",
            root,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(explain.stdout)["card"]["location"] == f"util/pricing.py:{DEF_LINE}"
    position = f"{root / 'app/checkout.py'}:{CURSOR.line + 1}:{CURSOR.character + 1}"
    complete = subprocess.run(
        [sys.executable, "-m", "repolm.cli", "complete", position, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "discount(" in json.loads(complete.stdout)["text"]
    bad = subprocess.run(
        [sys.executable, "-m", "repolm.cli", "complete", f"{root / 'app/checkout.py'}:999:1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "outside the document" in bad.stderr


# -- the engine thread ---------------------------------------------------------------------------------


def test_engine_work_runs_on_one_thread_and_cancelled_work_never_starts() -> None:
    def thread_after(seconds: float) -> int:
        time.sleep(seconds)
        return threading.get_ident()

    async def run() -> tuple[list[int], list[str]]:
        # Concurrent requests: the default executor would spread these over several threads.
        idents = await asyncio.gather(*(in_thread(lambda: thread_after(0.02)) for _ in range(4)))
        ran: list[str] = []
        busy = asyncio.ensure_future(in_thread(lambda: thread_after(0.3)))
        queued = asyncio.ensure_future(in_thread(lambda: ran.append("queued")))
        await asyncio.sleep(0.05)
        queued.cancel()  # what `$/cancelRequest` does to the request's task
        await busy
        await in_thread(lambda: ran.append("later"))
        return idents, ran

    idents, ran = asyncio.run(run())
    assert len(set(idents)) == 1 and idents[0] != threading.get_ident()
    assert ran == ["later"]
