"""Generation on an engine: an OpenAI-compatible completions endpoint (vLLM, llama.cpp's server, Ollama,
TGI, LM Studio), for a team's GPU box or a laptop's llama.cpp.

repolm keeps retrieval and the prompt contract; the engine only generates. The prompt goes as its token
ids where the engine takes them (`[model] prompt_as = "tokens"`), so the engine reads exactly what RAFT
trained on, and the answer streams back: the same stop rules as the local runtime end it as soon as
they can, and an editor's cancellation closes the stream, which vLLM and llama.cpp's server take as the
end of the request. Only the standard library is used (urllib, as the RAFT teacher client does).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repolm.config import ModelSection
from repolm.model import Cancel, FinishReason, Generation, StopRules, is_cancelled
from repolm.prompt import encode_prompt


class EngineError(RuntimeError):
    """The engine did not answer: not running, too slow, or it refused the request."""


@dataclass
class RemoteModel:
    """What the assist cores need of a model (its tokenizer, a generate step) with an engine behind it."""

    tokenizer: Any  # the served model's, from a local folder: prompts are budgeted and laid out here
    settings: ModelSection
    base: str  # the base identifier as given (the tokenizer's folder)
    adapter: Path | None = None  # adapters live on the engine, under the name it serves

    @property
    def where(self) -> str:
        return self.settings.url.rstrip("/")

    def _request(self, body: dict[str, Any]) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(self.settings.api_key_env) if self.settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode()
        return urllib.request.Request(f"{self.where}/completions", data=data, headers=headers, method="POST")

    def generate(
        self,
        prompt: Sequence[int] | str,
        max_new_tokens: int = 64,
        stop: StopRules | None = None,
        cancel: Cancel = None,
        healed: str = "",
    ) -> Generation:
        """Greedy decoding on the engine, streamed; `healed` as in `repolm.model.generate` (the engine
        cannot be constrained to it: the text after the prompt is judged from where it agrees)."""
        stop = stop or StopRules()
        ids = encode_prompt(self.tokenizer, prompt) if isinstance(prompt, str) else list(prompt)
        sent: Any = ids if self.settings.prompt_as == "tokens" else self.tokenizer.decode(ids)
        body = {
            "model": self.settings.served_name,
            "prompt": sent,
            "max_tokens": max_new_tokens,
            "temperature": 0,
            "stream": True,
        }
        started = time.perf_counter()
        text, first, reason = "", 0.0, "length"
        timeout = self.settings.timeout_seconds
        try:
            with urllib.request.urlopen(self._request(body), timeout=timeout) as response:
                for piece, finish in _stream(response):
                    if is_cancelled(cancel):
                        reason = "cancelled"  # leaving the block closes the stream: the engine stops
                        break
                    first = first or time.perf_counter() - started
                    text += piece
                    body_start = len(healed) if text.startswith(healed) else 0
                    cut = stop.cut(text[body_start:])
                    if cut is not None:
                        text, reason = text[: body_start + cut], "stop"
                        break
                    if finish:
                        reason = "stop" if finish == "stop" else "length"
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise EngineError(f"the engine at {self.where} did not answer: {_reason(error)}") from error
        finish_reason: FinishReason = reason  # type: ignore[assignment]
        return Generation(text, [], finish_reason, time.perf_counter() - started, len(ids), first)


def _stream(response: Any) -> Any:
    """(text, finish reason or None) for each server-sent event of a streamed completion."""
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            return
        event = json.loads(payload)
        if "error" in event:
            raise ValueError(f"the engine reported an error: {event['error']}")
        for choice in event.get("choices", ()):
            yield choice.get("text") or "", choice.get("finish_reason")


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        detail = error.read().decode("utf-8", "replace")[:300]
        return f"HTTP {error.code} {error.reason}: {detail}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def load_remote(settings: ModelSection, tokenizer_folder: Path, base: str) -> RemoteModel:
    """The engine client, with the tokenizer of the model the engine serves (a local folder)."""
    from transformers import AutoTokenizer

    if not settings.url:
        raise EngineError('[model] backend = "openai" needs [model] url, the endpoint\'s base URL')
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
    return RemoteModel(tokenizer, settings, base)
