"""LSP framing against a broken or hostile client: `Framer` fed bytes directly.

The end-to-end tests (a real `repolm serve` over stdio and TCP) are in test_server_fuzz.py.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from lsp_peer import frame

from repolm.server.transport import Framer, Rejected, request_id

CAP = 64 * 1024


def request(id_: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": "x", "params": {"a": [1, 2]}}).encode()


def events(framer: Framer, data: bytes, step: int = 0) -> list[bytes | Rejected]:
    """What the framer makes of `data`, fed in pieces of `step` bytes (0: at once)."""
    found: list[bytes | Rejected] = []
    for piece in [data[i : i + step] for i in range(0, len(data), step)] if step else [data]:
        framer.feed(piece)
        while (event := framer.next()) is not None:
            found.append(event)
    return found


def test_frames_come_out_whole_however_the_bytes_are_split() -> None:
    bodies = [
        request(1),
        request("two"),
        json.dumps({"text": "Content-Length: 5\r\n\r\nx"}).encode(),  # escaped: no line break
        json.dumps({"Content-Length": 5, "x": [1, 2]}, indent=2).encode(),  # line breaks between tokens
    ]
    stream = b"".join(frame(body) for body in bodies)
    stream += b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}"
    for step in (1, 7, 0):
        assert events(Framer(CAP), stream, step) == [*bodies, b"{}"]


def test_an_oversized_frame_is_rejected_with_its_id_and_never_held_in_memory() -> None:
    framer = Framer(1024 * 1024)
    head = b"Content-Length: 100000000\r\n\r\n" + request(7)[:-1] + b', "text": "'
    tracemalloc.start()
    try:
        found = events(framer, head)
        chunk = b"x" * 65536
        for _ in range(100_000_000 // len(chunk)):
            framer.feed(chunk)
            assert framer.next() is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert len(found) == 1 and isinstance(found[0], Rejected)
    assert found[0].request_id == 7 and "over the limit" in found[0].reason
    # The rest of that body is skipped up to the next header; the next message comes out whole.
    assert events(framer, b'"}}' + frame(request(8))) == [request(8)]


@pytest.mark.parametrize(
    ("bad", "rejected_id"),
    [
        (b"Content-Length: 0x\r\n\r\n" + request("bad"), "bad"),
        (b"Content-Length: -5\r\n\r\n" + request("bad"), "bad"),
        (b"Content-Length: 99999999999999999999999\r\n\r\n" + request("bad"), "bad"),
        (b"Content-Type: text/plain\r\n\r\n" + request("bad"), "bad"),  # no Content-Length
        (request("bad"), "bad"),  # no header at all
        (b"Content-Length: 10\r\n\r\n" + request("bad"), None),  # too short: a cut body, then garbage
        (b"Content-Length: %d\r\n\r\n" % (len(request(1)) + 9) + request("bad"), "bad"),  # too long
        (b"Content-Length: %d\r\n\r\n" % (len(request(1)) + 999) + request("bad"), "bad"),
        (b"Content-Length: 30\r\n" + request("bad"), "bad"),  # no blank line
        (b"Content-Length: 30\r\n\r\n", None),  # a header without its body
        (bytes(range(256)) * 3, None),
    ],
)
def test_after_a_malformed_frame_the_next_message_comes_out_whole(bad: bytes, rejected_id: Any) -> None:
    found = events(Framer(CAP), bad + frame(request("next")))
    assert found[-1] == request("next")
    rejected = [event for event in found if isinstance(event, Rejected)]
    assert [event.request_id for event in rejected if event.request_id is not None] == (
        [rejected_id] if rejected_id else []
    )
    assert all(event.reason for event in rejected)


def test_request_id_reads_the_top_level_id_of_damaged_json() -> None:
    assert request_id('{"jsonrpc": "2.0", "id": 3, "method": "x", "params": {"a": [1, 2') == 3
    assert request_id('{"params": {"id": 4}, "method": "x", "id": "five"}') == "five"
    assert request_id('{"params": {"id": 4, "method": "x"}, "x": [') is None  # nested, not the message's
    assert request_id('{"id": 6, "result": null}') is None  # a response: nothing to answer
    assert request_id('{"id": true, "method": "x"}') is None
    assert request_id("not json") is None
