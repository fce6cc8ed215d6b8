"""Token bytes: each token id's bytes, for exact incremental decoding and token healing.

Both work on bytes rather than decoded strings: a token may hold half a UTF-8 character, and healing asks
which tokens extend a given byte string. Plain Python with no torch, so the prompt contract can use it.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_SENTENCEPIECE_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass(frozen=True)
class Vocab:
    """Each token id's bytes (b"" for special tokens), indexed for prefix queries."""

    pieces: tuple[bytes, ...]
    special: frozenset[int]
    _sorted: tuple[bytes, ...] = field(repr=False)  # non-empty pieces, sorted
    _sorted_ids: tuple[int, ...] = field(repr=False)
    # Every id of a piece: SentencePiece vocabularies hold a single byte twice, as a token ("\n") and
    # as its byte fallback ("<0x0A>"), and only the model's scores can tell which it would write.
    _by_piece: dict[bytes, tuple[int, ...]] = field(repr=False)

    @classmethod
    def from_pieces(cls, pieces: Sequence[bytes], special: frozenset[int]) -> Vocab:
        order = sorted((p, i) for i, p in enumerate(pieces) if p)
        by_piece: dict[bytes, tuple[int, ...]] = {}
        for piece, token in order:
            by_piece[piece] = (*by_piece.get(piece, ()), token)
        return cls(tuple(pieces), special, tuple(p for p, _ in order), tuple(i for _, i in order), by_piece)

    def piece(self, token: int) -> bytes:
        return self.pieces[token] if 0 <= token < len(self.pieces) else b""

    def is_stop(self, token: int) -> bool:
        """Special tokens (EOS, chat markers) and ids beyond the tokenizer end a completion."""
        return token in self.special or not 0 <= token < len(self.pieces)

    def _starting_with(self, prefix: bytes) -> range:
        start = bisect_left(self._sorted, prefix)
        end = start
        while end < len(self._sorted) and self._sorted[end].startswith(prefix):
            end += 1
        return range(start, end)

    def extendable(self, piece: bytes) -> bool:
        """Whether some token is `piece` plus more bytes: ending a prompt on it is an unnatural boundary."""
        return any(len(self._sorted[i]) > len(piece) for i in self._starting_with(piece))

    def consistent_with(self, pending: bytes) -> list[int]:
        """Tokens that keep the output consistent with `pending`: its prefixes, or it plus more.

        When `pending` ends in spaces or tabs (the indentation the user typed) the "more" may not start
        with another: it would re-indent the line. Vocabularies with long whitespace tokens (Gemma's
        SentencePiece has runs of up to 31 spaces) otherwise let greedy decoding pick one and fill the
        line with blanks."""
        indented = pending[-1:] in (b" ", b"\t")
        ids = [
            self._sorted_ids[i]
            for i in self._starting_with(pending)
            if not (indented and self._sorted[i][len(pending) : len(pending) + 1] in (b" ", b"\t"))
        ]
        for n in range(1, len(pending)):
            ids += self._by_piece.get(pending[:n], ())
        return ids


@functools.cache
def _byte_level() -> dict[str, int]:
    """GPT-2's reversible printable character → byte map, as transformers defines it. Imported on first
    use: a tokenizer exists by then (transformers is loaded), and importing this module stays light."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def _byte_level_piece(token: str) -> bytes:
    """GPT-2 style (SmolLM, Llama 3, Qwen): each character stands for one byte."""
    chars = _byte_level()
    return bytes(chars[c] for c in token) if all(c in chars for c in token) else token.encode()


def _sentencepiece_piece(token: str) -> bytes:
    """SentencePiece: "▁" is a space and "<0x0A>" a raw byte."""
    match = _SENTENCEPIECE_BYTE.fullmatch(token)
    return bytes([int(match.group(1), 16)]) if match else token.replace("▁", " ").encode()


@functools.lru_cache(maxsize=8)
def vocab_of(tokenizer: Any) -> Vocab:
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = frozenset(tokenizer.all_special_ids)
    probe = "".join(tokenizer.convert_ids_to_tokens(tokenizer(" a", add_special_tokens=False)["input_ids"]))
    piece = _byte_level_piece if probe.startswith("Ġ") else _sentencepiece_piece
    pieces = [b"" if i in special else piece(t) for i, t in enumerate(tokens)]
    return Vocab.from_pieces(pieces, special)
