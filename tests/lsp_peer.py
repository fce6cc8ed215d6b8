"""A minimal JSON-RPC client of a real `repolm serve` subprocess (what an editor does), for tests that
write raw bytes: malformed frames, garbage, messages no LSP library would send."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

SERVE = [sys.executable, "-m", "repolm.cli", "serve"]


def frame(body: bytes) -> bytes:
    """`body` as one LSP base-protocol message."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class StdioPeer:
    """Talks to `repolm serve` over its stdin/stdout, or over TCP (`serve --tcp`) with `tcp=True`."""

    def __init__(self, command: list[str], cwd: Path, tcp: bool = False) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.root = cwd
        tcp_port = _free_port() if tcp else 0
        self.process = subprocess.Popen(
            [*command, "--tcp", f"127.0.0.1:{tcp_port}"] if tcp else command,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._out: BinaryIO
        self._in: BinaryIO
        if tcp:
            connection = _connect(tcp_port)
            self._out, self._in = connection.makefile("wb"), connection.makefile("rb")
        else:
            assert self.process.stdin is not None and self.process.stdout is not None
            self._out, self._in = self.process.stdin, self.process.stdout  # type: ignore[assignment]
        self.responses: dict[Any, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def write(self, data: bytes) -> None:
        """Raw bytes, framed or not."""
        self._out.write(data)
        self._out.flush()

    def send_raw(self, body: bytes) -> None:
        self.write(frame(body))

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
        stream = self._in
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _connect(port: int, timeout: float = 120.0) -> socket.socket:
    """The server listens once its imports are done (seconds): retry until then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port))
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
