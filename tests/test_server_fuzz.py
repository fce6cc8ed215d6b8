"""Hundreds of malformed or random messages to a real `repolm serve` over stdio; it must keep answering.

Every message is correctly framed (Content-Length) but its body is anything from invalid JSON to a
well-formed request with wrong types, positions outside the document, unknown URIs, or huge and binary
documents. Afterwards a normal completion request must still get a normal answer.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from conftest import write_tree

MESSAGES = 600
SEED = 20250901


class StdioPeer:
    """A minimal JSON-RPC client over a subprocess's stdin/stdout (what an editor does)."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.responses: dict[Any, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def send_raw(self, body: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def request(self, id_: int, method: str, params: Any, timeout: float = 120.0) -> dict[str, Any]:
        self.send({"id": id_, "method": method, "params": params})
        return self.wait_for(id_, timeout)

    def wait_for(self, id_: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while id_ not in self.responses:
                left = deadline - time.monotonic()
                assert left > 0, f"no response to request {id_}"
                assert self.process.poll() is None, f"the server exited with {self.process.returncode}"
                self._arrived.wait(min(left, 1.0))
            return self.responses[id_]

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if not headers:
                return
            message = json.loads(stream.read(int(headers["content-length"])))
            if "id" in message and "method" not in message:
                with self._arrived:
                    self.responses[message["id"]] = message
                    self._arrived.notify_all()
            elif "id" in message:  # a request from the server (progress, registration): accept it
                self.send({"id": message["id"], "result": None})

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


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
                    "uri": f"file:///tmp/fuzz-{n}.py",
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
                "textDocument": {"uri": f"file:///tmp/fuzz-{n - 1}.py"},
                "position": {"line": rng.randint(10**6, 10**7), "character": 0},
            },
        }
    return message


def test_server_survives_garbage_and_still_completes(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"util/math.py": "def double(x):\n    return 2 * x\n"})
    peer = StdioPeer([sys.executable, "-m", "repolm.cli", "serve"], root)
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
