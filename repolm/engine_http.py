"""HTTP to an engine's OpenAI-compatible API (`[model] url`): requests with the API key, errors in words.
Only the standard library is used (urllib, as the RAFT teacher client does)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from repolm.config import ModelSection

JSON = "application/json"


class EngineError(RuntimeError):
    """The engine did not answer: not running, too slow, or it refused the request."""


def engine_request(
    settings: ModelSection, endpoint: str, body: dict[str, Any] | None = None, accept: str = JSON
) -> urllib.request.Request:
    """A request to `[model] url`/`endpoint` (a GET without a body), with the API key when one is set."""
    headers = {"Content-Type": JSON, "Accept": accept}
    key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    url = f"{settings.url.rstrip('/')}/{endpoint}"
    return urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")


def describe_error(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        detail = error.read().decode("utf-8", "replace")[:300]
        return f"HTTP {error.code} {error.reason}: {detail}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__
