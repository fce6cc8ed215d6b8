"""Fill-in-the-middle templates of the code-model families, recognised from a tokenizer's special tokens.

A FIM model reads the code before and after the cursor around its own control tokens and writes the
middle. Families trained on whole repositories also read other files in their own layout (Qwen2.5-Coder's
`<|repo_name|>` / `<|file_sep|>`, StarCoder2's `<repo_name>` / `<file_sep>`): retrieved snippets go there,
each as a file under its path. A family without one (DeepSeek-Coder, CodeLlama, CodeGemma) reads them
as the plain layout's path comments at the head of the prefix. The repository's name is left out: both
families were trained with it optional.

Plain Python, no torch: the prompt contract (repolm.prompt) lays completions out with these.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PLAIN = "plain"  # the embedded model's layout: snippets and the prefix as one file, no suffix


@dataclass(frozen=True)
class FimTemplate:
    name: str
    prefix: str  # the control token before the code before the cursor
    suffix: str  # ... before the code after the cursor
    middle: str  # ... after which the model writes what goes between them
    file_separator: str = ""  # opens each file of the family's repository layout ("": it has none)
    path_after_prefix: bool = False  # StarCoder2 writes the current file's path after its prefix token
    end: str = ""  # the token the model ends the middle with ("": the tokenizer's end of text)
    spaced: bool = False  # CodeLlama: "▁<PRE> prefix▁<SUF>suffix▁<MID>"

    @property
    def repository_layout(self) -> bool:
        return bool(self.file_separator)

    def file(self, path: str, text: str) -> str:
        """A retrieved snippet as one file of the repository layout."""
        return f"{self.file_separator}{path}\n{text}"

    def around(self, head: str, path: str, suffix: str) -> tuple[str, str]:
        """What goes before and after the code before the cursor: `head` (the snippets, already in this
        family's layout), the current file's path where the layout has it, and the code after the cursor."""
        closing = f"{self.suffix}{suffix}{self.middle}"
        if self.spaced:  # the suffix and middle tokens carry their leading space ("▁")
            return f"{self.prefix} {head}", closing
        if not self.repository_layout:
            return f"{self.prefix}{head}", closing
        if self.path_after_prefix:
            return f"{head}{self.file_separator}{self.prefix}{path}\n", closing
        return f"{head}{self.file_separator}{path}\n{self.prefix}", closing

    def end_token(self, tokenizer: Any) -> str:
        return self.end or tokenizer.eos_token or ""


# Most specific first: CodeGemma and Qwen2.5-Coder share the three FIM tokens.
TEMPLATES = (
    FimTemplate("qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", file_separator="<|file_sep|>"),
    FimTemplate("codegemma", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", end="<|file_separator|>"),
    FimTemplate(
        "starcoder2",
        "<fim_prefix>",
        "<fim_suffix>",
        "<fim_middle>",
        file_separator="<file_sep>",
        path_after_prefix=True,
    ),
    FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    FimTemplate("deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", end="▁<EOT>", spaced=True),
)
NAMES = (PLAIN, *(template.name for template in TEMPLATES))
# What tells a family apart besides its FIM tokens.
_MARKERS = {"qwen": "<|file_sep|>", "codegemma": "<|file_separator|>", "starcoder2": "<file_sep>"}


def _vocabulary(tokenizer: Any) -> set[str]:
    return set(tokenizer.get_vocab()) | set(getattr(tokenizer, "added_tokens_encoder", {}))


@functools.lru_cache(maxsize=8)
def detect(tokenizer: Any) -> FimTemplate | None:
    """The FIM template of the tokenizer's family, or None (no FIM tokens: the plain layout)."""
    vocabulary = _vocabulary(tokenizer)
    for template in TEMPLATES:
        needed = (template.prefix, template.suffix, template.middle, _MARKERS.get(template.name, ""))
        if all(token in vocabulary for token in needed if token):
            return template
    return None


def template_named(name: str, tokenizer: Any) -> FimTemplate | None:
    """`name` as `[serve] template` gives it: "auto" (detect), "plain" (None) or a family's name."""
    if name == "auto":
        return detect(tokenizer)
    if name == PLAIN:
        return None
    found = next((template for template in TEMPLATES if template.name == name), None)
    if found is None:
        raise ValueError(f"unknown completion template {name!r}; known: auto, {', '.join(NAMES)}")
    return found


def stop_tokens(template: FimTemplate | None) -> Sequence[str]:
    """Control tokens a FIM model may write after the middle instead of its end token."""
    if template is None:
        return ()
    tokens = (template.prefix, template.suffix, template.middle, template.file_separator, template.end)
    return tuple(token for token in tokens if token)
