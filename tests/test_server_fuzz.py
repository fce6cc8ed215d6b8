"""Malformed or random messages to a real `repolm serve` over stdio (and TCP); it must keep answering.

The first test frames every message correctly (Content-Length) but its body is anything from invalid JSON
to a well-formed request with wrong types, positions outside the document, unknown URIs, or huge and
binary documents; afterwards a normal completion request must still get a normal answer. The others
damage the framing itself: huge, missing, garbled and wrong Content-Length headers, cut frames, random
bytes, thousands of them; every well-framed request after them must be answered.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_tree
from lsp_peer import SERVE, StdioPeer, frame

MESSAGES = 600
SEED = 20250901
CAP = 64 * 1024  # max_message_bytes in the framing tests' repolm.toml
FRAMES = 3000
FRAMES_SEED = 20250929
PING_TIMEOUT = 30.0


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choices = [
        lambda: None,
        lambda: rng.randint(-(2**40), 2**40),
        lambda: rng.random() * 1e9,
        lambda: rng.choice([True, False]),
        lambda: "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 20))),
        lambda: "file:///nowhere/" + str(rng.randint(0, 9)) + ".py",
    ]
    if depth < 2:
        choices += [
            lambda: [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
            lambda: {
                rng.choice(["uri", "line", "character", "textDocument", "position", "x"]): random_value(
                    rng, depth + 1
                )
                for _ in range(rng.randint(0, 3))
            },
        ]
    return rng.choice(choices)()


def fuzz_message(rng: random.Random, n: int, doc_uri: str) -> bytes | dict[str, Any]:
    methods = [
        "textDocument/completion",
        "textDocument/inlineCompletion",
        "textDocument/hover",
        "workspace/executeCommand",
        "textDocument/didOpen",
        "textDocument/didChange",
        "textDocument/didSave",
        "workspace/didChangeConfiguration",
        "workspace/didChangeWatchedFiles",
        "$/cancelRequest",
        "repolm/unknown",
        "textDocument/definitionOfEverything",
    ]
    kind = n % 10
    folder = doc_uri.rsplit("/", 1)[0]  # documents inside the workspace, so that their contents are checked
    if kind == 0:  # not JSON at all
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 60)))
    if kind == 1:  # JSON, but not JSON-RPC
        return json.dumps(random_value(rng)).encode()
    method = rng.choice(methods)
    message: dict[str, Any] = {"method": method, "params": random_value(rng)}
    if kind in (2, 3, 4) or "/did" not in method:
        message["id"] = f"fuzz-{n}"
    if kind == 5:  # positions outside the document, or a document nobody opened
        line = rng.choice([-1, 10**9, 2**31, 3])
        target = rng.choice([doc_uri, "file:///nowhere/x.py", "untitled:Untitled-1", "", 42])
        message["params"] = {"textDocument": {"uri": target}, "position": {"line": line, "character": -5}}
    if kind == 6:  # commands with the wrong arguments
        message = {
            "id": f"fuzz-{n}",
            "method": "workspace/executeCommand",
            "params": {
                "command": rng.choice(["repolm.search", "repolm.explain", "repolm.nothing", 7]),
                "arguments": random_value(rng),
            },
        }
    if kind == 7:  # huge or binary documents
        content = rng.choice(["x = 1\n" * 400_000, "\0\x01\x02binary\xff" * 100])
        message = {
            "method": "textDocument/didOpen",
            "params": {
                "textDocument": {
                    "uri": f"{folder}/fuzz-{n}.py",
                    "languageId": "python",
                    "version": 1,
                    "text": content,
                }
            },
        }
    if kind == 8:  # a request for that document, at a position that does not exist
        message = {
            "id": f"fuzz-{n}",
            "method": rng.choice(["textDocument/completion", "textDocument/hover"]),
            "params": {
                "textDocument": {"uri": f"{folder}/fuzz-{n - 1}.py"},
                "position": {"line": rng.randint(10**6, 10**7), "character": 0},
            },
        }
    return message


def test_server_survives_garbage_and_still_completes(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"util/math.py": "def double(x):\n    return 2 * x\n"})
    peer = StdioPeer(SERVE, root)
    try:
        settings = {"repolm": {"completion": {"budget": 256, "maxTokens": 8}}}
        reply = peer.request(
            0,
            "initialize",
            {
                "processId": None,
                "rootUri": root.as_uri(),
                "capabilities": {},
                "initializationOptions": settings,
            },
        )
        assert "capabilities" in reply["result"]
        peer.send({"method": "initialized", "params": {}})
        doc_uri = (root / "app.py").as_uri()
        peer.send(
            {
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {"uri": doc_uri, "languageId": "python", "version": 1, "text": "y = 1\n"}
                },
            }
        )
        rng = random.Random(SEED)
        asked = []
        for n in range(MESSAGES):
            message = fuzz_message(rng, n, doc_uri)
            if isinstance(message, bytes):
                peer.send_raw(message)
            else:
                peer.send(message)
                if "id" in message and isinstance(message.get("method"), str):
                    asked.append(message["id"])
        # Every fuzz request is answered (with a result or an error), then a real completion works.
        for id_ in asked:
            answer = peer.wait_for(id_, timeout=60)
            assert "result" in answer or "error" in answer
        text = "from util.math import double\n\nvalue = dou"
        peer.send(
            {
                "method": "textDocument/didChange",
                "params": {
                    "textDocument": {"uri": doc_uri, "version": 2},
                    "contentChanges": [{"text": text}],
                },
            }
        )
        reply = peer.request(
            10**6,
            "textDocument/completion",
            {"textDocument": {"uri": doc_uri}, "position": {"line": 2, "character": len("value = dou")}},
        )
        assert "error" not in reply, reply
        assert isinstance(reply["result"]["items"], list)
        assert peer.request(10**6 + 1, "shutdown", None)["result"] is None
    finally:
        peer.close()


# -- damaged framing ---------------------------------------------------------------------------------------


def request(id_: Any, method: str = "workspace/executeCommand", params: Any = None) -> bytes:
    if params is None:  # a cheap request that the server's own handler answers (with an error)
        params = {"command": "repolm.search", "arguments": ["x", 0]}
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).encode()


def framing_workspace(folder: Path) -> Path:
    files = {"repolm.toml": f"[serve]\nmax_message_bytes = {CAP}\n", "app.py": "x = 1\n"}
    return write_tree(folder, files)


def initialize(peer: StdioPeer, root: Path) -> None:
    """`initialize` only: without `initialized` no indexing or model loading starts."""
    params = {"processId": None, "rootUri": root.as_uri(), "capabilities": {}}
    assert "capabilities" in peer.request("init", "initialize", params)["result"]


def ping(peer: StdioPeer, id_: str) -> None:
    """A well-framed request must get its answer (the search handler refuses k = 0)."""
    peer.write(frame(request(id_)))
    assert "k must be" in peer.wait_for(id_, PING_TIMEOUT)["error"]["message"]


def shut_down(peer: StdioPeer) -> None:
    assert peer.request("bye", "shutdown", None, timeout=PING_TIMEOUT)["result"] is None
    peer.write(frame(b'{"jsonrpc": "2.0", "method": "exit"}'))
    assert peer.process.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioPeer]:
    """One server for the framing tests below; the last one shuts it down."""
    root = framing_workspace(tmp_path_factory.mktemp("framing"))
    peer = StdioPeer(SERVE, root)
    try:
        initialize(peer, root)
        yield peer
    finally:
        peer.close()


def test_a_huge_content_length_is_refused_and_the_server_keeps_serving(peer: StdioPeer) -> None:
    peer.write(b"Content-Length: 1000000000000\r\n\r\n" + request("huge"))
    error = peer.wait_for("huge", PING_TIMEOUT)["error"]
    assert error["code"] == -32600 and "over the limit" in error["message"], error
    ping(peer, "after huge")
    # An honest frame over the limit (an editor sending a huge file) is skipped whole, and only it.
    document = {"uri": (peer.root / "big.py").as_uri(), "languageId": "python", "version": 1}
    did_open = {"textDocument": {**document, "text": "x = 1\n" * (CAP // 5)}}
    notification = {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": did_open}
    big_request = request("big", "textDocument/hover", did_open)
    peer.write(frame(json.dumps(notification).encode()) + frame(big_request))
    assert "over the limit" in peer.wait_for("big", PING_TIMEOUT)["error"]["message"]
    ping(peer, "after big")


# Damaged messages, each built around a request body; the first would leave today's pygls reading forever.
DAMAGED: dict[str, Callable[[bytes], bytes]] = {
    "no header": lambda body: body,
    "no Content-Length": lambda body: b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + body,
    "not a number": lambda body: b"Content-Length: abc\r\n\r\n" + body,
    "negative": lambda body: b"Content-Length: -5\r\n\r\n" + body,
    "too short": lambda body: b"Content-Length: 10\r\n\r\n" + body,
    "too long": lambda body: b"Content-Length: %d\r\n\r\n" % (len(body) + 7) + body,
    "much too long": lambda body: b"Content-Length: %d\r\n\r\n" % (len(body) + 500) + body,
    "no blank line": lambda body: b"Content-Length: %d\r\n" % len(body) + body,
    "binary": lambda body: bytes(range(256)),
}


def test_missing_or_garbled_content_length_then_a_valid_request(peer: StdioPeer) -> None:
    for case, damage in DAMAGED.items():
        peer.write(damage(request(f"damaged: {case}")))
        try:
            ping(peer, f"after: {case}")
        except AssertionError as error:
            raise AssertionError(f"{case}: {error}") from error
        # Where the damaged message's id can be read, its sender gets an error rather than silence.
        answered = f"damaged: {case}" in peer.responses
        assert answered == (case not in ("too short", "binary")), case


def test_thousands_of_fuzzed_frames_never_stop_the_server(peer: StdioPeer) -> None:
    rng = random.Random(FRAMES_SEED)
    pings = []
    for n in range(FRAMES):
        if n % 5 == 0:
            pings.append(f"ping-{n}")
            peer.write(frame(request(f"ping-{n}")))
        else:
            peer.write(fuzz_frame(rng, n))
    for id_ in pings:  # a well-framed request is answered whatever came before it
        assert "k must be" in peer.wait_for(id_, PING_TIMEOUT)["error"]["message"]
    shut_down(peer)


def fuzz_frame(rng: random.Random, n: int) -> bytes:
    """A damaged, random or odd piece of the stream (never `shutdown`, `exit` or `initialized`)."""
    body = request(f"fuzz-{n}", rng.choice(["workspace/executeCommand", "textDocument/hover", "x/y"]))
    kind = rng.randrange(11)
    if kind == 0:  # random bytes, unframed
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    if kind == 1:  # JSON that is not JSON-RPC, framed
        value = rng.choice([[1, 2], "s", 3, None, {"jsonrpc": "2.0"}, {"id": n}, [{"jsonrpc": "2.0"}] * 3])
        return frame(json.dumps(value).encode())
    if kind == 2:  # a request cut short, framed as it is
        return frame(body[: rng.randint(1, len(body) - 1)])
    if kind == 3:  # a bad Content-Length
        values = [b"-1", b"abc", b"", b"1.5", b"0x10", b"10" * 15, b"1000000000000", b"0", b" 9 9"]
        return b"Content-Length: " + rng.choice(values) + b"\r\n\r\n" + body
    if kind == 4:  # no Content-Length
        return rng.choice([b"", b"Content-Type: x\r\n\r\n", b"\r\n"]) + body
    if kind == 5:  # a Content-Length off by a little or a lot
        return b"Content-Length: %d\r\n\r\n" % max(1, len(body) + rng.randint(-40, 2000)) + body
    if kind == 6:  # a frame cut short (in its header or its body), the next message right after it
        whole = frame(body)
        return whole[: rng.randint(1, len(whole) - 1)]
    if kind == 7:  # header lines of every sort
        lines = [b"X-Thing: 1", b"Content-Length: 12", b"\xff\xfe", b"no colon", b": empty name", b" "]
        ending = rng.choice([b"\r\n", b"\r\n\r\n", b""])
        return b"\r\n".join(rng.choices(lines, k=rng.randint(1, 4))) + ending
    if kind == 8:  # JSON-RPC with ids of the wrong type
        message = {"jsonrpc": "2.0", "id": rng.choice([{"a": 1}, [1], True, 1.5, None]), "method": "x"}
        return frame(json.dumps(message).encode())
    if kind == 9 and n % 7 == 0:  # an honest frame over the limit
        return frame(request(f"fuzz-{n}", "x/y", {"text": "y" * (CAP + rng.randint(1, CAP))}))
    if kind == 9:  # a notification
        return frame(b'{"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "nothing"}}')
    return frame(body)  # a request, answered with a result or an error


def test_tcp_connections_are_framed_the_same_way(tmp_path: Path) -> None:
    root = framing_workspace(tmp_path)
    peer = StdioPeer(SERVE, root, tcp=True)
    try:
        initialize(peer, root)
        peer.write(b"Content-Length: 1000000000000\r\n\r\n" + request("huge"))
        assert "over the limit" in peer.wait_for("huge", PING_TIMEOUT)["error"]["message"]
        peer.write(b"garbage\r\n" + bytes(range(256)) + request("bare"))
        ping(peer, "after garbage")
        shut_down(peer)
    finally:
        peer.close()
