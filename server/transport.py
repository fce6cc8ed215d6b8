"""LSP base-protocol framing that a broken or hostile client cannot break.

pygls' reading loop trusts the frames it reads: a huge `Content-Length` makes it allocate the body
(`MemoryError` ends the server), and a missing or wrong one leaves it reading bodies as header lines for
good. `FrameReader` stands between the byte stream and that loop: pygls only ever sees well-formed frames
of at most `max_bytes`, and everything else becomes a `Rejected` event the server reports (with a
JSON-RPC error when the request's id can be read).

Recovery rests on one property of the protocol: a line `Content-Length: N` ended by a line break (an
*anchor*) never occurs inside a JSON body, since JSON strings cannot hold a raw line break and
`Content-Length` is no JSON token. So an anchor always starts a message: after garbage, inside a body
whose declared length runs past it, or in a damaged header, reading picks up the next message there,
and a well-framed message is never lost to whatever came before it.
"""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO

logger = logging.getLogger("repolm.server")

RequestId = int | str

_ANCHOR = re.compile(rb"content-length:[ \t]{0,4}(\d{1,20})[ \t]{0,4}\r?\n", re.IGNORECASE)
_ANCHOR_MAX = 48  # the longest anchor that pattern matches, rounded up
_MARKER = b"content-length:"
_PARTIAL_TAIL = re.compile(rb"[ \t]{0,4}(?:\d{1,20}[ \t]{0,4}\r?)?")  # what may follow _MARKER so far
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\t\x20-\x7e]*)")  # RFC 9110 field name: value
_MAX_HEADER_LINE = 8 * 1024
_ID_WINDOW = 64 * 1024  # bytes of a rejected message read for its request id

_HEADERS, _BODY, _RECOVER, _SKIP = "headers", "body", "recover", "skip"
_AGAIN = object()  # a step changed state: take the next one


@dataclass(frozen=True)
class Rejected:
    """Bytes that were not a usable message; `request_id` when they read as a request."""

    reason: str
    request_id: RequestId | None = None


class Framer:
    """Splits a byte stream into message bodies (`bytes`) and `Rejected` events; plain Python, no I/O.

    `feed` it bytes, then call `next` until it returns None (it needs more bytes). It holds at most one
    message of `max_bytes` plus one chunk: an oversized body is skipped as it arrives.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._pos = 0  # the first byte not consumed yet
        self._state = _HEADERS
        self._length: int | None = None  # Content-Length of the header block being read
        self._in_block = False  # a line of that block has been read
        self._body_length = 0
        self._scanned = 0  # body bytes already searched for an anchor
        self._reason = ""  # why the bytes from _pos are rejected (in _RECOVER)
        self._skip_from = 0  # where skipping starts once their request id is read (in _RECOVER)
        self._steps = {_HEADERS: self._headers, _BODY: self._body, _RECOVER: self._recover, _SKIP: self._skip}

    def feed(self, data: bytes) -> None:
        del self._buffer[: self._pos]
        self._skip_from -= self._pos
        self._pos = 0
        self._buffer += data

    def next(self) -> bytes | Rejected | None:
        while (event := self._steps[self._state]()) is _AGAIN:
            pass
        return event  # type: ignore[return-value]

    # -- states ------------------------------------------------------------------------------------

    def _headers(self) -> Any:
        buffer, start = self._buffer, self._pos
        newline = buffer.find(b"\n", start, start + _MAX_HEADER_LINE)
        if newline < 0:
            if len(buffer) - start < _MAX_HEADER_LINE:
                return None
            return self._reject(f"a header line longer than {_MAX_HEADER_LINE} bytes", start, start + 1)
        end = newline + 1
        anchor = _find_anchor(buffer, start + 1, end)
        if anchor is not None:  # garbage, then a message begins on the same line
            garbage = bytes(buffer[start : anchor.start()])
            self._pos = anchor.start()
            self._new_block()
            reason = f"{len(garbage)} bytes that are not part of a message"
            return Rejected(reason, _read_request_id(_text(garbage))[0])
        line = bytes(buffer[start:newline]).removesuffix(b"\r")
        if not line:
            self._pos = end
            return self._end_block() if self._in_block else _AGAIN  # blank lines between messages
        header = _HEADER.fullmatch(line)
        if header is None:
            reason = f"a line that is not a message header: {_text(line[:60])!r}"
            return self._reject(reason, start, start + 1)
        if header.group(1).lower() == b"content-length":
            value = header.group(2).strip()
            if self._length is not None:  # this line starts a new message: the last one never came
                self._new_block()
                return Rejected("a message header without its message")
            if not (value.isdigit() and len(value) <= 20):
                return self._reject(f"a message with a bad Content-Length {_text(value[:30])!r}", end, end)
            self._length = int(value)
        self._in_block = True
        self._pos = end
        return _AGAIN

    def _end_block(self) -> Any:
        length = self._length
        self._new_block()
        if length is None:
            return self._reject("a message without a Content-Length header", self._pos, self._pos)
        if length == 0:
            return self._reject("an empty message (Content-Length: 0)", self._pos, self._pos)
        if length > self.max_bytes:
            reason = (
                f"a message of {length} bytes, over the limit of {self.max_bytes} "
                "(max_message_bytes in the [serve] section of repolm.toml)"
            )
            return self._reject(reason, self._pos, self._pos)
        self._state, self._body_length, self._scanned = _BODY, length, 0
        return _AGAIN

    def _body(self) -> Any:
        buffer, start = self._buffer, self._pos
        end = start + self._body_length
        # An anchor that starts inside the body (it may end beyond it) means the length was wrong.
        anchor = _find_anchor(buffer, start + self._scanned)
        if anchor is not None and anchor.start() < end:
            cut = bytes(buffer[start : anchor.start()])
            self._pos, self._state = anchor.start(), _HEADERS
            reason = (
                f"a message whose Content-Length ({self._body_length}) runs past its end "
                f"(the next message starts after {len(cut)} bytes)"
            )
            return Rejected(reason, _read_request_id(_text(cut))[0])
        if len(buffer) < end or self._anchor_may_start_before(end):
            self._scanned = max(0, len(buffer) - start - _ANCHOR_MAX)
            return None
        self._pos, self._state = end, _HEADERS
        return bytes(buffer[start:end])

    def _recover(self) -> Any:
        """Read the request id of the rejected bytes (waiting for them while it cannot tell yet), then
        skip them."""
        buffer, start = self._buffer, self._pos
        window = min(len(buffer), start + _ID_WINDOW)
        anchor = _find_anchor(buffer, start, window)
        stop = anchor.start() if anchor is not None else window
        request_id, decided = _read_request_id(_text(buffer[start:stop]))
        if not decided and anchor is None and window - start < _ID_WINDOW:
            return None
        self._pos, self._state = self._skip_from, _SKIP
        return Rejected(self._reason, request_id)

    def _skip(self) -> Any:
        anchor = _find_anchor(self._buffer, self._pos)
        if anchor is not None:
            self._pos, self._state = anchor.start(), _HEADERS
            return _AGAIN
        self._pos = max(self._pos, len(self._buffer) - _ANCHOR_MAX)
        return None

    # -- helpers -----------------------------------------------------------------------------------

    def _reject(self, reason: str, recover_from: int, skip_from: int) -> Any:
        self._new_block()
        self._reason, self._pos, self._skip_from, self._state = reason, recover_from, skip_from, _RECOVER
        return _AGAIN

    def _new_block(self) -> None:
        self._length, self._in_block = None, False

    def _anchor_may_start_before(self, end: int) -> bool:
        """Whether the buffer ends in the beginning of an anchor that starts before `end`: only the
        bytes still to come can tell whether the body ends at `end`."""
        first = max(self._pos, len(self._buffer) - _ANCHOR_MAX + 1)
        tail = bytes(self._buffer[first:]).lower()
        at = tail.find(b"c", 0, end - first)
        while at >= 0:
            rest = tail[at:]
            if _MARKER.startswith(rest[: len(_MARKER)]) and (
                len(rest) <= len(_MARKER) or _PARTIAL_TAIL.fullmatch(rest, len(_MARKER))
            ):
                return True
            at = tail.find(b"c", at + 1, end - first)
        return False


def _find_anchor(buffer: bytearray, start: int, stop: int | None = None) -> re.Match[bytes] | None:
    """The first anchor that starts at or after `start` (and ends by `stop`). Found from the line breaks
    that end anchors (`find` runs at memory speed; message bodies rarely hold a raw line break at all)
    rather than by running the pattern over every byte."""
    stop = len(buffer) if stop is None else stop
    newline = buffer.find(b"\n", start, stop)
    while newline >= 0:
        anchor = _ANCHOR.search(buffer, max(start, newline + 1 - _ANCHOR_MAX), newline + 1)
        if anchor is not None:
            return anchor
        newline = buffer.find(b"\n", newline + 1, stop)
    return None


# -- request ids of damaged messages ---------------------------------------------------------------------

_DECODER = json.JSONDecoder()
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def request_id(text: str) -> RequestId | None:
    """The id of the JSON-RPC request `text` holds, read even when the text is cut short or damaged
    after its "id" and "method"; None when it is no request (a notification, a response, garbage)."""
    return _read_request_id(text)[0]


def _read_request_id(text: str) -> tuple[RequestId | None, bool]:
    """(the id, or None; whether more text could not change that answer).

    Top-level members are decoded one by one until one fails, so a member after a broken `params`
    is never read, and an "id" inside `params` is never taken for the message's."""
    members: dict[str, Any] = {}
    at = _space(text, 0)
    if at == len(text) or text[at] != "{":
        return None, at < len(text)
    at += 1
    try:
        while not text.startswith("}", at := _space(text, at)):
            key, at = _DECODER.raw_decode(text, at)
            if not isinstance(key, str) or not text.startswith(":", at := _space(text, at)):
                raise ValueError(at)
            members[key], at = _DECODER.raw_decode(text, _space(text, at + 1))
            if (found := _id_of(members)) is not None:
                return found, True
            if text.startswith(",", at := _space(text, at)):
                at += 1
            elif not text.startswith("}", at):
                raise ValueError(at)
    except (ValueError, RecursionError):  # cut short here, or broken: more text may complete the member
        return None, False
    return _id_of(members), True


def _space(text: str, at: int) -> int:
    """Where the JSON whitespace from `at` ends."""
    return _JSON_SPACE.match(text, at).end()  # type: ignore[union-attr]  # it matches the empty string


def _id_of(members: dict[str, Any]) -> RequestId | None:
    found = members.get("id")
    is_id = isinstance(found, (int, str)) and not isinstance(found, bool)
    return found if is_id and isinstance(members.get("method"), str) else None


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


# -- the reader pygls reads from -------------------------------------------------------------------------

TRANSPORT_ERROR = "$/repolm/transportError"
_NOTICE = json.dumps({"jsonrpc": "2.0", "method": TRANSPORT_ERROR, "params": None}).encode()
_CHUNK = 64 * 1024


class FrameReader:
    """What pygls' reading loop reads from (`readline()`, then `read(n)` for the body), fed from a
    binary stream through a `Framer`: pygls only sees well-formed frames.

    A `Rejected` event is queued in `rejected`, and a `$/repolm/transportError` notification takes its
    place in the stream: the server answers it on its event loop, in order with the other messages.
    """

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        self.framer = Framer(max_bytes)
        self.rejected: deque[Rejected] = deque()
        self._stream = stream
        self._pending: deque[bytes] = deque()  # the header line, the blank line, the body

    def readline(self) -> bytes:
        if not self._pending:
            event = self._next_event()
            if event is None:
                return b""  # the end of the input: pygls stops
            if isinstance(event, Rejected):
                self.rejected.append(event)
                event = _NOTICE
            self._pending.extend((b"Content-Length: %d\r\n" % len(event), b"\r\n", event))
        return self._pending.popleft()

    def read(self, size: int) -> bytes:
        """The body its header announced (pygls asks for exactly that many bytes)."""
        return self._pending.popleft()

    def _next_event(self) -> bytes | Rejected | None:
        while (event := self.framer.next()) is None:
            try:
                chunk = self._stream.read1(_CHUNK)
            except OSError as error:  # a TCP client that went away
                logger.warning("repolm: reading from the client failed: %s", error)
                return None
            if not chunk:
                return None
            self.framer.feed(chunk)
        return event
