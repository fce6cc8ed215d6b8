"""Code-aware tokens for the lexical index.

`parseHTTPResponse`, `parse_http_response` and `http.response` must all meet a query for
"http response", and a query for the exact identifier must still rank its own definition first.
So every identifier yields itself (lower-cased) plus its camelCase / snake_case parts, and a dotted
name yields the whole dotted name as well as its pieces. Tantivy then only splits on whitespace.
The same function runs on documents and on queries, which is what keeps them matching.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|[0-9]+")
# Boundaries inside an identifier: lower→Upper, acronym→Word ("HTTPResponse" → HTTP, Response), digits.
_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
MAX_TOKEN_CHARS = 64  # longer "identifiers" are data (hashes, base64), not names anyone searches for


@lru_cache(maxsize=200_000)
def identifier_tokens(word: str) -> tuple[str, ...]:
    """The tokens one identifier or dotted name contributes, whole name first."""
    lowered = word.lower()
    if len(word) > MAX_TOKEN_CHARS:
        return ()
    tokens = [lowered]
    pieces = word.split(".")
    if len(pieces) > 1:
        tokens.extend(p.lower() for p in pieces)
    for piece in pieces:
        parts = _PART.findall(piece)
        if len(parts) > 1 or (parts and parts[0].lower() != piece.lower()):
            tokens.extend(part.lower() for part in parts)
    return tuple(dict.fromkeys(tokens))


def code_tokens(text: str) -> list[str]:
    """All tokens of a text, in order, repeats kept (BM25 counts them)."""
    tokens: list[str] = []
    for word in _WORD.findall(text):
        tokens.extend(identifier_tokens(word))
    return tokens


def analyzed(text: str) -> str:
    """The text as Tantivy's whitespace tokenizer should see it."""
    return " ".join(code_tokens(text))
