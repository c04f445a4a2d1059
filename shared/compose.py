"""Composition root: the collaborators every flow receives, built once per process.

Trigger adapters call `services()` and pass the result to a flow; tests build their own `Services`
(a different clock, a recording queue sender) instead of patching modules.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from shared.adapters import storage
from shared.adapters.ado_connect import AdoConnector
from shared.adapters.cipher import Cipher, cipher_from_setting
from shared.adapters.store import Store, table_store
from shared.config import settings

LOCAL_KEY_FILE = Path(".azurite") / "token-key"


class Send(Protocol):
    def __call__(self, queue: str, message: dict[str, Any], /, *, delay: float | None = None) -> None:
        """Put one JSON message on a queue, invisible for `delay` seconds when given."""
        ...


@dataclass(frozen=True)
class Services:
    store: Store
    ado: AdoConnector
    send: Send
    clock: Callable[[], float]
    session: requests.Session


def http_session() -> requests.Session:
    """A connection pool for Azure DevOps calls."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@functools.cache
def _cipher(value: str | None, local: bool) -> Cipher:
    return cipher_from_setting(value, key_file=LOCAL_KEY_FILE if local else None)


def token_cipher() -> Cipher:
    """The cipher of stored credentials: `TOKEN_ENCRYPTION_KEY`, or on local storage a local key file."""
    current = settings()
    return _cipher(current.token_encryption_key, current.local_storage)


def build(*, clock: Callable[[], float] = time.time, send: Send | None = None,
          session: requests.Session | None = None) -> Services:
    store = table_store(token_cipher, clock)
    session = session or http_session()
    return Services(store=store, ado=AdoConnector(store.integrations, session), send=send or storage.send,
                    clock=clock, session=session)


@functools.cache
def services() -> Services:
    """The process-wide services."""
    return build()
