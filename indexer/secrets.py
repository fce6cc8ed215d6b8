"""Secret redaction: nothing that looks like a credential reaches an index, a prompt or a model.

Detection is detect-secrets' (its plugins' patterns, entropy scoring and false-positive heuristics).
What this module adds is what redaction needs and a scanner for reports does not: the exact span of
each value (only the value is replaced, names stay searchable), line counts that never change,
multi-line private-key bodies, a few key formats detect-secrets lacks, `.env` files, passwords in
URLs whatever characters they hold, AWS secret keys that stand beside their key id with no name
before them, and a cursor that keeps its place in a redacted buffer (`redact_split`).

Speed: detect-secrets runs ~25 plugins on every line, far too slow for every line of a repository.
A file is first probed with C-speed substring searches for known key prefixes (`AKIA`, `ghp_`,
`eyJ`, `-----BEGIN`...) and secret-sounding names followed by an assignment (`password =`,
`"token":`); only the lines those land on are scanned by the plugins. Most files have no such line
and cost a few dozen `str.find` calls. The price: a secret with neither a known prefix nor a
secret-sounding name on its line (a bare random string, a Telegram or Twilio key in `x = "..."`)
is not found, the same blind spot detect-secrets' own keyword and entropy heuristics have. The lines
the plugins scanned are remembered, so redacting an edited buffer again scans only its changed lines.

Every redacted span becomes REDACTION_MARKER; the kind of secret is in Redaction.secret_type.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from detect_secrets.filters.heuristic import (
    is_indirect_reference,
    is_likely_id_string,
    is_lock_file,
    is_not_alphanumeric_string,
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import (
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    REGEX_BY_FILETYPE,
    KeywordDetector,
)
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from detect_secrets.util.filetype import FileType, determine_file_type

REDACTION_MARKER = "[REDACTED]"


@dataclass(frozen=True)
class Redaction:
    """One secret removed from `line` (1-based); the text itself is never recorded."""

    line: int
    secret_type: str


# --- detectors ------------------------------------------------------------------------------------

# Every line-based detect-secrets plugin except: IPPublicDetector (a public IP is not a secret and
# redacting IPs would wreck search in networking code), PrivateKeyDetector (it only flags the BEGIN
# line; the key body is handled below) and BasicAuthDetector (its password may hold none of RFC 3986's
# sub-delimiters, so `admin:S3cr3t!x@host` slipped through; _URL_CREDENTIAL replaces it).
_REGEX_PLUGINS: tuple[RegexBasedDetector, ...] = (
    AWSKeyDetector(),
    ArtifactoryDetector(),
    AzureStorageKeyDetector(),
    CloudantDetector(),
    DiscordBotTokenDetector(),
    GitHubTokenDetector(),
    GitLabTokenDetector(),
    IbmCloudIamDetector(),
    IbmCosHmacDetector(),
    JwtTokenDetector(),
    MailchimpDetector(),
    NpmDetector(),
    OpenAIDetector(),
    PypiTokenDetector(),
    SendGridDetector(),
    SlackDetector(),
    SoftlayerDetector(),
    SquareOAuthDetector(),
    StripeDetector(),
    TelegramBotTokenDetector(),
    TwilioKeyDetector(),
)
_KEYWORD = KeywordDetector()
_ENTROPY: tuple[HighEntropyStringsPlugin, ...] = (Base64HighEntropyString(), HexHighEntropyString())

# Formats detect-secrets has no plugin for (group 1, when present, is the secret). Its OpenAIDetector
# only knows legacy `...T3BlbkFJ...` keys; project keys (`sk-proj-...`) and Anthropic's (`sk-ant-...`)
# share the `sk-` shape. Bearer tokens are what leaks from copied curl commands.
_EXTRA_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (OpenAIDetector.secret_type, re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{20,}")),
    ("Google API Key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}")),
    (GitHubTokenDetector.secret_type, re.compile(r"(?<![\w-])github_pat_[A-Za-z0-9_]{22,}")),
    ("Bearer Token", re.compile(r"(?i)\b(?:bearer|authorization:\s*token)\s+([A-Za-z0-9._~+/-]{16,}=*)")),
)

# `scheme://user:password@host` in any file. Only the password goes: scheme, user and host keep the
# code readable. Passwords hold `!$&;#@...` in practice, so the password runs to the last `@` before
# the host; `/`, `?`, whitespace and quotes end it (a port and a path, `host:8080/x?to=a@b`, are no
# credentials). The user may be empty (`redis://:password@host`).
_URL_CREDENTIAL = re.compile(r"://[^\s:/?#@\"'`<>]*:([^\s/?\"'`<>]+)@(?=[\w\[])")

# An AWS secret access key has no prefix of its own: 40 characters of base64 without padding. Alone it
# cannot be told from any token; beside its key id (the same line, or the line before or after, as
# where a comment or a tuple pairs them) it can.
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

# --- the cheap probe ------------------------------------------------------------------------------

# Substrings that every token of a prefixed format contains (case-sensitive). Each costs one C-level
# scan of the file (~1 µs per 2 KB), so families are merged into regexes that start with one
# literal character, which `re` scans as fast as `str.find`; an alternation without a literal
# first character would be ten times slower. Rare formats (Square, SoftLayer URLs, Mailchimp,
# Telegram, Discord, Twilio) have no anchor: they are found on lines that name them.
_ANCHORS = ("eyJ", "xox", "sk-", "SG.", "npm_", "pypi-", "hooks.slack.com")
_ANCHOR_PATTERNS = (
    re.compile(r"A(?:KIA|SIA|BIA|CCA|3T|KC|Iza|ccountKey=)"),  # AWS, Artifactory, Google, Azure
    re.compile(r"g(?:h[pousr]_|ithub_pat_|l(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-)"),  # GitHub, GitLab
    re.compile(r"_(?:live_|authToken)"),  # Stripe, npm
    re.compile(r"://[^\s/@]*:[^\s/]+@"),  # credentials in a URL
)
# Secret-sounding names (searched in the lower-cased text); a hit counts only when an assignment,
# a key/value separator or a call follows the name (`password =`, `"api_key":`, `setToken(`).
_KEYWORDS = ("pass", "pwd", "secret", "token", "auth", "key", "credential", "contrase")
_KEY_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_-")
_ASSIGNMENT_AFTER_NAME = re.compile(r"[\w.\-]*['\"\]]{0,2}[ \t]*(?:[:=!(]|=>)")

_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
# A body line of a key whose END line is missing (truncated file): base64 or a PEM header.
_KEY_MATERIAL_LINE = re.compile(r"\s*(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+: .*)\s*$")
# Inside a key block: a line of nothing but key material (or a PEM header) goes whole; in any other
# line (code around a key) only the runs that look like key material do.
_KEY_BODY_LINE = re.compile(r"\s*(?:[A-Za-z0-9+/=]+|[A-Za-z-]+: .*)\s*$")
_KEY_MATERIAL_RUN = re.compile(r"[A-Za-z0-9+/=]{16,}")
_MAX_KEY_LINES = 200

# Keyword and entropy scans are regex-heavy; minified or data lines this long only get the
# prefixed-format detectors.
_MAX_KEYWORD_LINE = 4000
_LINE_CACHE_SIZE = 4096  # scanned lines remembered (see _scan_short_line)

# --- false-positive filters -----------------------------------------------------------------------

_NAME_PREFIX = re.compile(r"[\s\"':=]?[A-Za-z_]\w*[=:]")
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]|\{[^{}]*\}")
_DOTTED_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_NAME_LIKE = re.compile(r"(?i)[a-z_.\-]*(?:pass|pwd|secret|token|key|auth|credential)[a-z_.\-]*")
_TRIVIAL_VALUE = re.compile(r"(?i)\d+(?:\.\d+)?|true|false|yes|no|on|off|none|null|nil")

# --- `.env` files and shell-style assignments -----------------------------------------------------

_ENV_LINE = re.compile(
    r"\s*(?:export\s+)?[A-Za-z_][\w.-]*\s*=\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s#]+))"
)
# `DB_PASSWORD=...`, `--password=...`, `ENV GITHUB_TOKEN=...` in configs, scripts and docs. The name
# must contain the keyword as a whole component so `--tokenizer=bert` stays readable.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?<![\w.-])-{0,2}(?:[\w.-]*[_.-])?"
    r"(?:password|passwd|pass|pwd|secret|token|api_?key|auth|credentials?|private_?key|access_?key)"
    r"(?:[_.-][\w.-]*)?="
    r"(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<bare>[^\s\"'`;&|)]+))"
)
# Source files: an unquoted `PASSWORD=x` there is a keyword argument or an identifier, not a value.
_CODE_EXTENSIONS = frozenset(
    (  # noqa: SIM905 (a word list reads better than forty quoted strings)
        ".py .pyi .pyx .js .jsx .mjs .cjs .ts .tsx .go .rs .java .kt .kts .scala .c .h .cc .cpp .cxx .hpp"
        " .cs .rb .php .swift .m .mm .lua .pl .r .jl .dart .ex .exs .erl .hs .clj .groovy .vue .svelte"
    ).split()
)

_Span = tuple[int, int, str]  # start, end, secret type
_GENERIC_TYPES = frozenset({_KEYWORD.secret_type, *(plugin.secret_type for plugin in _ENTROPY)})


@dataclass(frozen=True)
class _FileKind:
    is_env: bool
    is_code: bool
    is_lock: bool
    file_type: FileType

    @staticmethod
    def of(path: str) -> _FileKind:
        name = os.path.basename(path)
        ext = os.path.splitext(name)[1].lower()
        return _FileKind(
            is_env=name == ".env" or name.startswith(".env.") or name.endswith(".env"),
            is_code=ext in _CODE_EXTENSIONS,
            is_lock=is_lock_file(path),
            file_type=determine_file_type(path),
        )

    @property
    def keyword_regexes(self) -> dict[re.Pattern[str], int]:
        return REGEX_BY_FILETYPE.get(self.file_type, QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)


def redact(text: str, path: str) -> tuple[str, list[Redaction]]:
    """Replace every secret value in `text` with REDACTION_MARKER; the line count never changes.

    `path` (repository-relative) selects the rules: `.env` files redact every non-trivial value,
    config files accept unquoted values, source files need quoted ones.
    """
    kind = _FileKind.of(path)
    lines: list[str] | None = None
    found: list[Redaction] = []
    key_lines: set[int] = set()
    if "-----BEGIN" in text:
        lines = text.split("\n")
        key_lines = _redact_private_keys(lines, found)

    candidates = _candidate_lines(text, kind)
    if not candidates and not found:
        return text, []
    if lines is None:
        lines = text.split("\n")

    beside_key_ids = _aws_key_id_neighbours(lines, candidates)
    values: dict[str, str] = {}  # secret value -> its type
    for index, keyword_line in candidates.items():
        if index in key_lines:
            continue
        spans = [*_line_spans(lines[index], kind, keyword_line)]
        if index in beside_key_ids:
            spans += _aws_secret_spans(lines[index])
        if spans:
            values.update((lines[index][start:end], secret_type) for start, end, secret_type in spans)
            lines[index] = _apply(lines[index], spans, index, found)
    _redact_repeats(lines, values, found)
    found.sort(key=lambda r: r.line)
    return "\n".join(lines), found


def redact_split(text: str, path: str, offset: int) -> tuple[str, str]:
    """`text` redacted, cut where the cursor at `offset` was: the redacted text before it and after it.

    The whole text is redacted before it is cut, so a secret the cursor stands in or next to is still
    found. Lines stay; the cursor keeps its place among the characters that stay, and one inside a
    secret moves past the marker that replaced it.
    """
    clean, found = redact(text, path)
    if not found:
        return text[:offset], text[offset:]
    row = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    lines, clean_lines = text.split("\n"), clean.split("\n")
    column = _redacted_column(lines[row], clean_lines[row], offset - start)
    before = "".join(line + "\n" for line in clean_lines[:row]) + clean_lines[row][:column]
    return before, clean[len(before) :]


def _redacted_column(line: str, clean: str, column: int) -> int:
    """Where `column` of `line` is in `clean`, the line with its secrets replaced by the marker."""
    if line == clean:
        return column
    pieces = clean.split(REDACTION_MARKER)  # line = pieces[0] secret pieces[1] secret ... pieces[-1]
    at, clean_at = 0, 0  # where the current piece starts in `line` and in `clean`
    for number, piece in enumerate(pieces):
        if number:  # a secret stands before this piece, from `at` to where the piece starts
            last = number == len(pieces) - 1
            found = len(line) - len(piece) if last else line.find(piece, at + 1)
            at = max(at, found)
            clean_at += len(REDACTION_MARKER)
            if column < at:
                return clean_at
        if column <= at + len(piece):
            return clean_at + column - at
        at += len(piece)
        clean_at += len(piece)
    return len(clean)


# --- probe ----------------------------------------------------------------------------------------


def _candidate_lines(text: str, kind: _FileKind) -> dict[int, bool]:
    """0-based indexes of the lines worth scanning, mapped to whether a secret-sounding name is on them."""
    if kind.is_env:
        return dict.fromkeys(range(text.count("\n") + 1), True)
    offsets: dict[int, bool] = {}
    for position in _anchor_hits(text):
        offsets.setdefault(text.rfind("\n", 0, position) + 1, False)
    lower = text.lower()
    if len(lower) == len(text):  # lower() can change lengths (e.g. "İ"); then offsets would not match
        for position in _keyword_hits(lower, kind.is_code):
            offsets[text.rfind("\n", 0, position) + 1] = True
    else:
        offsets.update(dict.fromkeys(_line_starts(text), True))
    return _offsets_to_indexes(text, offsets)


def _anchor_hits(text: str) -> Iterator[int]:
    for anchor in _ANCHORS:
        position = text.find(anchor)
        while position != -1:
            yield position
            position = text.find(anchor, _line_end(text, position))
    for pattern in _ANCHOR_PATTERNS:
        for match in pattern.finditer(text):
            yield match.start()


def _keyword_hits(lower: str, is_code: bool) -> Iterator[int]:
    for keyword in _KEYWORDS:
        position = lower.find(keyword)
        while position != -1:
            if _is_secret_name(lower, position, keyword, is_code):
                yield position
            position = lower.find(keyword, position + len(keyword))


def _is_secret_name(lower: str, position: int, keyword: str, is_code: bool) -> bool:
    # A bare `key` is a dict key or a sort key; secret keys are compounds (api_key, privateKey).
    if keyword == "key" and (position == 0 or lower[position - 1] not in _KEY_PREFIX_CHARS):
        return False
    if not _ASSIGNMENT_AFTER_NAME.match(lower, position + len(keyword)):
        return False
    # In source code a secret is a string literal; `token = next(tokens)` needs no scan.
    return not is_code or _has_quote(lower, position)


def _has_quote(lower: str, position: int) -> bool:
    end = _line_end(lower, position)
    return any(lower.find(quote, position, end) != -1 for quote in "'\"`")


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end == -1 else end


def _line_starts(text: str) -> Iterator[int]:
    yield 0
    position = text.find("\n")
    while position != -1:
        yield position + 1
        position = text.find("\n", position + 1)


def _offsets_to_indexes(text: str, offsets: dict[int, bool]) -> dict[int, bool]:
    indexes: dict[int, bool] = {}
    line, previous = 0, 0
    for offset in sorted(offsets):
        line += text.count("\n", previous, offset)
        previous = offset
        indexes[line] = offsets[offset]
    return indexes


def _aws_key_id_neighbours(lines: list[str], candidates: dict[int, bool]) -> set[int]:
    """Indexes of the lines on, before and after an AWS key id, which join the candidates: there its
    secret key may stand without a name (`# AKIA... <secret>`, `("AKIA...", "<secret>")`)."""
    neighbours: set[int] = set()
    for index in [i for i in candidates if _AWS_KEY_ID.search(lines[i])]:
        for near in range(max(0, index - 1), min(len(lines), index + 2)):
            neighbours.add(near)
            candidates.setdefault(near, False)
    return neighbours


# --- per-line detection ---------------------------------------------------------------------------


def _line_spans(line: str, kind: _FileKind, keyword_line: bool) -> tuple[_Span, ...]:
    if len(line) > _MAX_KEYWORD_LINE:  # a minified line is not worth a place in the cache
        return _scan_line(line, kind, keyword_line)
    return _scan_short_line(line, kind, keyword_line)


def _scan_line(line: str, kind: _FileKind, keyword_line: bool) -> tuple[_Span, ...]:
    spans = [*_regex_plugin_spans(line), *_extra_spans(line), *_url_credential_spans(line)]
    if keyword_line and len(line) <= _MAX_KEYWORD_LINE:
        named = [*_keyword_spans(line, kind)]
        if not kind.is_lock:  # lock files are full of hashes that are not secrets
            named += _entropy_spans(line)
        # `secret = get_secret("default")`, `key = request.headers["key"]`: checked last, it is slow.
        if named and not is_indirect_reference(line):
            spans += named
        if kind.is_env:
            spans += _assignment_spans(_ENV_LINE, line, "Env File Value")
        elif not kind.is_code:
            spans += _assignment_spans(_SECRET_ASSIGNMENT, line, "Secret Assignment")
    return tuple(spans)


# Completion redacts the open buffer on every keystroke: the lines not being typed on come from here
# instead of going through the plugins again, the slow part of a redaction.
_scan_short_line = functools.lru_cache(maxsize=_LINE_CACHE_SIZE)(_scan_line)


def _regex_plugin_spans(line: str) -> Iterator[_Span]:
    for plugin in _REGEX_PLUGINS:
        accepted = set(plugin.analyze_string(line))  # runs plugin-specific checks (e.g. JWT decoding)
        if not accepted:
            continue
        for regex in plugin.denylist:
            for match in regex.finditer(line):
                if match.group(0) in accepted or accepted.intersection(match.groups()):
                    start, end = _value_span(match)
                    if not _rejected_by_detect_secrets(line[start:end], line, plugin):
                        yield start, end, plugin.secret_type


def _value_span(match: re.Match[str]) -> tuple[int, int]:
    """The secret inside a plugin's match.

    A capture group that starts inside the match and covers most of the rest is the value after a
    name (`aws_secret = "<group>"`, `://user:<group>@`); one at the start is just the token's prefix
    (`(ghp|gho)_...`), so the whole match is the secret, trimmed of the delimiters some patterns
    include and extended to the end of the token.
    """
    for group in range(1, (match.lastindex or 0) + 1):
        start, end = match.span(group)
        if start > match.start() and end - start >= (match.end() - start) // 2:
            return start, end
    start, end = match.span()
    text = match.string
    name = _NAME_PREFIX.match(text, start, end)  # keep the `AccountKey=` of `AccountKey=<secret>`
    if name:
        start = name.end()
    while start < end and text[start] in " \t=:\"'":
        start += 1
    while end > start and text[end - 1] in " \t\"'":
        end -= 1
    # Some patterns stop short of the token (Slack's `[a-z0-9]+` before a mixed-case tail).
    while end < len(text) and (text[end].isalnum() or text[end] in "_-") and end > start:
        end += 1
    return start, end


def _extra_spans(line: str) -> Iterator[_Span]:
    for secret_type, pattern in _EXTRA_PATTERNS:
        for match in pattern.finditer(line):
            group = 1 if match.lastindex else 0
            # Keys mix letters and digits; `sk-learn-compatible-estimator` does not.
            if _has_letter_and_digit(match.group(group)):
                yield *match.span(group), secret_type


def _url_credential_spans(line: str) -> Iterator[_Span]:
    for match in _URL_CREDENTIAL.finditer(line):
        password = match.group(1)
        # Templates, masks and documentation's examples (`${PASSWORD}`, `{password}`, `%(password)s`,
        # `<password>`, `****`, `abc:xyz@`, `a:b@`).
        if password[0] in "$%{<" or not any(c.isalnum() for c in password) or is_sequential_string(password):
            continue
        yield *match.span(1), BasicAuthDetector.secret_type


def _aws_secret_spans(line: str) -> Iterator[_Span]:
    for match in _AWS_SECRET.finditer(line):
        token = match.group(0)
        # Random base64 of this length mixes cases and digits; a hex digest or a word run does not.
        if token.lower() != token and token.upper() != token and any(not c.isalpha() for c in token):
            yield *match.span(), AWSKeyDetector.secret_type


def _has_letter_and_digit(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def _keyword_spans(line: str, kind: _FileKind) -> Iterator[_Span]:
    for regex, group in kind.keyword_regexes.items():
        for match in regex.finditer(line):
            start, end = _strip_comment(line, *match.span(group))
            value = line[start:end]
            if not _rejected_by_detect_secrets(value, line, _KEYWORD) and not _looks_like_code(value):
                yield start, end, _KEYWORD.secret_type


def _strip_comment(line: str, start: int, end: int) -> tuple[int, int]:
    """Unquoted config values run to the end of the line; `pw: x  # comment` means `x`."""
    if start > 0 and line[start - 1] in "'\"`":
        return start, end
    for marker in (" #", "\t#", " ;"):
        cut = line.find(marker, start, end)
        if cut != -1:
            end = cut
    return start, len(line[start:end].rstrip()) + start


def _entropy_spans(line: str) -> Iterator[_Span]:
    for plugin in _ENTROPY:
        for match in plugin.regex.finditer(line):
            value = match.group(2)
            if plugin.calculate_shannon_entropy(value) > plugin.entropy_limit and not (
                _rejected_by_detect_secrets(value, line, plugin)
            ):
                yield *match.span(2), plugin.secret_type


def _assignment_spans(pattern: re.Pattern[str], line: str, secret_type: str) -> Iterator[_Span]:
    for match in pattern.finditer(line):
        group = next(name for name in ("dq", "sq", "bare") if match.group(name) is not None)
        value = match.group(group)
        if value and not _TRIVIAL_VALUE.fullmatch(value) and value[0] not in "$%<{" and not _is_name(value):
            yield *match.span(group), secret_type


def _rejected_by_detect_secrets(value: str, line: str, plugin: BasePlugin) -> bool:
    """detect-secrets' own false-positive heuristics for a found value."""
    return (
        is_sequential_string(value)
        or is_potential_uuid(value)
        or is_templated_secret(value)
        or is_prefixed_with_dollar_sign(value)
        or is_not_alphanumeric_string(value)
        or is_likely_id_string(value, line, plugin)
    )


def _looks_like_code(value: str) -> bool:
    """Values next to a secret-sounding name that are obviously not secrets.

    Format templates (`"%s"`, `"{password}"`), prose (`"Enter your password"`), dotted paths
    (`"django.contrib.auth.hashers"`), field names (`"password"`, `"new_password"`), flags and numbers.
    """
    if any(c.isspace() for c in value) or _DOTTED_PATH.fullmatch(value) or _is_name(value):
        return True
    if _TRIVIAL_VALUE.fullmatch(value):  # flags such as 'MODULE_PWD_STATE': 'yes'
        return True
    return not any(c.isalnum() for c in _PLACEHOLDER.sub("", value))


def _is_name(value: str) -> bool:
    return bool(_NAME_LIKE.fullmatch(value))


# --- rewriting ------------------------------------------------------------------------------------


def _apply(line: str, spans: list[_Span], index: int, found: list[Redaction]) -> str:
    """Replace the (merged) spans right to left so earlier offsets stay valid."""
    merged: list[list] = []
    for start, end, secret_type in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            if merged[-1][2] in _GENERIC_TYPES:  # "GitHub Token" says more than "High Entropy"
                merged[-1][2] = secret_type
        else:
            merged.append([start, end, secret_type])
    for start, end, _ in reversed(merged):
        line = line[:start] + REDACTION_MARKER + line[end:]
    for secret_type in dict.fromkeys(secret_type for _, _, secret_type in merged):
        found.append(Redaction(index + 1, secret_type))
    return line


def _redact_repeats(lines: list[str], values: dict[str, str], found: list[Redaction]) -> None:
    """A secret found once is removed everywhere, even from lines the probe skipped (a comment)."""
    for value, secret_type in values.items():
        # Only token-like values: a password such as "password" or "admin" would hit ordinary words.
        if len(value) < 12 or not _has_letter_and_digit(value):
            continue
        for index, line in enumerate(lines):
            if value in line:
                lines[index] = line.replace(value, REDACTION_MARKER)
                found.append(Redaction(index + 1, secret_type))


def _redact_private_keys(lines: list[str], found: list[Redaction]) -> set[int]:
    """Redact PEM/OpenSSH/PGP private-key bodies; returns the indexes of the lines touched.

    The BEGIN and END lines stay (they say what was there); each body line becomes the marker.
    A key on one line (JSON service-account files escape the newlines) keeps its markers too.
    """
    touched: set[int] = set()
    index = 0
    while index < len(lines):
        begin = _PRIVATE_KEY_BEGIN.search(lines[index])
        if not begin:
            index += 1
            continue
        line = lines[index]
        end = _PRIVATE_KEY_END.search(line, begin.end())
        if end:
            if end.start() > begin.end():
                lines[index] = line[: begin.end()] + REDACTION_MARKER + line[end.start() :]
                _record(found, touched, index)
            index += 1
            continue
        index = _redact_key_body(lines, index, found, touched)
    return touched


def _redact_key_body(lines: list[str], begin: int, found: list[Redaction], touched: set[int]) -> int:
    """Blank the lines after a BEGIN line up to its END line; returns the index to resume at."""
    stop = min(len(lines), begin + 1 + _MAX_KEY_LINES)
    end = next((i for i in range(begin + 1, stop) if _PRIVATE_KEY_END.search(lines[i])), None)
    if end is None:  # truncated: take the lines that still look like key material
        end = begin + 1
        while end < stop and _KEY_MATERIAL_LINE.match(lines[end]):
            end += 1
    if end > begin + 1:
        _record(found, touched, begin)
    for index in range(begin + 1, end):
        line = lines[index]
        if _KEY_BODY_LINE.match(line):
            indent = line[: len(line) - len(line.lstrip())]
            lines[index] = indent + REDACTION_MARKER + ("\r" if line.endswith("\r") else "")
            touched.add(index)
        elif line.strip():
            # A key written inside code (a string literal in a test, a config template): only the key
            # material goes, so the quotes and brackets around it, and the file's syntax, survive.
            redacted = _KEY_MATERIAL_RUN.sub(REDACTION_MARKER, line)
            if redacted != line:
                lines[index] = redacted
                touched.add(index)
    return end


def _record(found: list[Redaction], touched: set[int], index: int) -> None:
    touched.add(index)
    found.append(Redaction(index + 1, PrivateKeyDetector.secret_type))
