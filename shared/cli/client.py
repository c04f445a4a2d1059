"""The management API as the command line calls it: one session, the key from `MANAGE_API_KEY`."""

from __future__ import annotations

import os
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:7071"
KEY_VARIABLE = "MANAGE_API_KEY"
TIMEOUT = 120.0


class CliError(Exception):
    """Something the operator must fix; the message says what. `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Api:
    """Calls under `{url}/api/manage/`, authenticated with the management key."""

    def __init__(self, url: str, key: str | None = None) -> None:
        key = key if key is not None else os.environ.get(KEY_VARIABLE)
        if not key:
            raise CliError(f"{KEY_VARIABLE} is not set: export the bundle's management key first", code=2)
        self.url = url.rstrip("/")
        self._http = requests.Session()
        self._http.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer of `method /api/manage/{path}`; CliError with the bundle's `detail` otherwise."""
        url = f"{self.url}/api/manage/{path.lstrip('/')}"
        try:
            response = self._http.request(method, url, json=body, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise CliError(f"could not reach the bundle at {self.url}: {type(error).__name__}") from None
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        if response.status_code >= 400:
            detail = answer.get("detail") if isinstance(answer, dict) else None
            raise CliError(f"{method} {url} answered {response.status_code}: {detail or response.reason}")
        return answer
