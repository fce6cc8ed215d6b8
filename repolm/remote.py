"""Generation on an engine: an OpenAI-compatible completions endpoint (vLLM, llama.cpp's server, Ollama,
TGI, LM Studio), for a team's GPU box or a laptop's llama.cpp.

repolm keeps retrieval and the prompt contract; the engine only generates. The prompt goes as its token
ids where the engine takes them (`[model] prompt_as = "tokens"`), so the engine reads exactly what RAFT
trained on, and the answer streams back: the same stop rules as the local runtime end it as soon as
they can, and an editor's cancellation closes the stream, which vLLM and llama.cpp's server take as the
end of the request. With `[model] engine_lora`, requests name the repository's promoted adapter on the
engine (repolm/engine_lora.py).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repolm.config import ModelSection
from repolm.engine_http import EngineError, describe_error, engine_request
from repolm.engine_lora import served_adapters
from repolm.model import Cancel, FinishReason, Generation, OnText, StopRules, is_cancelled
from repolm.prompt import encode_prompt

ADAPTER_CHECK_SECONDS = 2.0  # how often requests may ask the engine which adapter it serves


@dataclass
class RemoteModel:
    """What the assist cores need of a model (its tokenizer, a generate step) with an engine behind it."""

    tokenizer: Any  # the served model's, from a local folder: prompts are budgeted and laid out here
    settings: ModelSection
    base: str  # the base identifier as given (the tokenizer's folder)
    root: Path | None = None  # with `engine_lora`: the repository whose promoted adapter requests name
    served: str = ""  # that adapter's name on the engine, "" while it serves none
    checked: float = field(default=float("-inf"), repr=False)

    @property
    def where(self) -> str:
        return self.settings.url.rstrip("/")

    @property
    def adapter(self) -> str | None:
        return self.served or None

    def model_name(self, refresh: bool = False) -> str:
        """What a request names: this repository's adapter on the engine when it serves one (asked at
        most every ADAPTER_CHECK_SECONDS, or at once on `refresh`), else the base model."""
        if not (self.settings.loads_adapters and self.root):
            return self.settings.served_name
        now = time.monotonic()
        if refresh or now - self.checked >= ADAPTER_CHECK_SECONDS:
            self.checked = now
            loaded = served_adapters(self.settings, self.root)
            # Keep the name while it is served: a promotion loads the new adapter before it unloads this.
            self.served = self.served if self.served in loaded else (loaded[-1] if loaded else "")
        return self.served or self.settings.served_name

    def _request(self, body: dict[str, Any]) -> urllib.request.Request:
        return engine_request(self.settings, "completions", body, accept="text/event-stream")

    def generate(
        self,
        prompt: Sequence[int] | str,
        max_new_tokens: int = 64,
        stop: StopRules | None = None,
        cancel: Cancel = None,
        healed: str = "",
        on_text: OnText = None,
    ) -> Generation:
        """Greedy decoding on the engine, streamed; `healed` and `on_text` as in `repolm.model.generate`
        (the engine cannot be constrained to `healed`: the text after the prompt is judged from where it
        agrees)."""
        stop = stop or StopRules()
        ids = encode_prompt(self.tokenizer, prompt) if isinstance(prompt, str) else list(prompt)
        sent: Any = ids if self.settings.prompt_as == "tokens" else self.tokenizer.decode(ids)
        body = {"prompt": sent, "max_tokens": max_new_tokens, "temperature": 0, "stream": True}
        started = time.perf_counter()
        text, first, reason = "", 0.0, "length"
        try:
            with self._open(body) as response:
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
                    if on_text is not None and piece:
                        on_text(text[body_start:])
        except (urllib.error.URLError, OSError, ValueError) as error:
            problem = describe_error(error)
            raise EngineError(f"the engine at {self.where} did not answer: {problem}") from error
        finish_reason: FinishReason = reason  # type: ignore[assignment]
        return Generation(text, [], finish_reason, time.perf_counter() - started, len(ids), first)

    def _open(self, body: dict[str, Any]) -> Any:
        """The streamed response; a 404 while an adapter is named means a promotion or rollback unloaded
        it since the last look, so the request goes once more under the name the engine serves now."""
        timeout = self.settings.timeout_seconds
        try:
            first = self._request({**body, "model": self.model_name()})
            return urllib.request.urlopen(first, timeout=timeout)
        except urllib.error.HTTPError as error:
            if error.code != 404 or not self.served:
                raise
        again = self._request({**body, "model": self.model_name(refresh=True)})
        return urllib.request.urlopen(again, timeout=timeout)


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


def load_remote(settings: ModelSection, tokenizer_folder: Path, base: str, root: Path) -> RemoteModel:
    """The engine client for the repository at `root`, with the tokenizer of the model the engine serves
    (a local folder)."""
    from transformers import AutoTokenizer

    if not settings.url:
        raise EngineError('[model] backend = "openai" needs [model] url, the endpoint\'s base URL')
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
    return RemoteModel(tokenizer, settings, base, root)
