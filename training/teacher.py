"""An optional teacher for explanation answers: any OpenAI-compatible chat endpoint, off by default.

Only the standard library is used (urllib), so the feature adds no dependency. The API key is read from
the environment variable the user names in `[train] teacher_api_key_env`; the key itself never appears
in configuration files, manifests or logs. A failing teacher never fails the build: the example keeps
its answer generated from the code.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from repolm.prompt import EXPLAIN_INSTRUCTIONS

TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Teacher:
    base_url: str  # e.g. http://localhost:8000/v1 ; the client posts to {base_url}/chat/completions
    model: str
    api_key_env: str = ""
    max_tokens: int = 256
    timeout: float = TIMEOUT_SECONDS

    def answer(self, user_message: str) -> str | None:
        """The teacher's reply to the explain instructions plus `user_message`, or None on any failure."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": EXPLAIN_INSTRUCTIONS},
                {"role": "user", "content": user_message},
            ],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                reply = json.loads(response.read().decode("utf-8"))
            return str(reply["choices"][0]["message"]["content"])
        except (OSError, urllib.error.URLError, ValueError, KeyError, IndexError, TypeError):
            return None


def teacher_from_settings(base_url: str, model: str, api_key_env: str) -> Teacher | None:
    """The configured teacher, or None while `base_url` is empty (the default)."""
    if not base_url:
        return None
    if not model:
        raise ValueError("[train] teacher_model must be set when teacher_base_url is")
    return Teacher(base_url, model, api_key_env)
