"""Key-encryption keys (KEKs) of the token cipher: a local AES-256 key, or an Azure Key Vault RSA key.

`shared.adapters.cipher` wraps each data key with one of these. A local key wraps with AES key wrap
(RFC 3394); a Key Vault key wraps with RSA-OAEP-256 through a `KeyWrapClient`
(`shared.adapters.keyvault` is the real one), and unwrapped data keys are cached briefly. Key Vault
key identifiers: https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates

I/O: only through the key wrap client. Errors never carry key material.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from shared.core.errors import ConfigError, IdentityInvalid

KEY_BYTES = 32
UNWRAP_CACHE_ENTRIES = 512
UNWRAP_CACHE_SECONDS = 600.0

_KEY_VAULT_URL = re.compile(
    r"https://(?P<host>[a-z0-9-]{3,24}\.(?:vault\.azure\.net|vault\.azure\.cn|vault\.usgovcloudapi\.net"
    r"|managedhsm\.azure\.net))(?::443)?/keys/(?P<name>[A-Za-z0-9-]{1,127})(?:/(?P<version>[A-Za-z0-9]{1,64}))?/?",
    re.IGNORECASE,
)


# ---------------------------------------------------------------- key vault key URLs


@dataclass(frozen=True)
class KeyVaultKeyUrl:
    """A Key Vault key identifier: `https://<vault host>/keys/<name>[/<version>]` (host lowercased)."""

    host: str
    name: str
    version: str | None

    @property
    def text(self) -> str:
        base = f"https://{self.host}/keys/{self.name}"
        return f"{base}/{self.version}" if self.version else base

    def same_key(self, other: KeyVaultKeyUrl) -> bool:
        """Same vault and key name (any version); Key Vault names are case-insensitive."""
        return self.host == other.host and self.name.lower() == other.name.lower()


def parse_key_vault_url(value: str) -> KeyVaultKeyUrl | None:
    """The key URL `value` names, or None when it is not a Key Vault key URL."""
    match = _KEY_VAULT_URL.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    return KeyVaultKeyUrl(match["host"].lower(), match["name"], match["version"])


def is_key_vault_url(value: str) -> bool:
    """True when `value` is a Key Vault key URL (with or without a version)."""
    return parse_key_vault_url(value) is not None


# ---------------------------------------------------------------- key-encryption keys


class KeyWrapClient(Protocol):
    """Wraps and unwraps data keys with Key Vault keys (`shared.adapters.keyvault.KeyVaultKeys`)."""

    def wrap_key(self, key_url: str, data_key: bytes) -> tuple[str, bytes]:
        """Wrap `data_key` under `key_url` (latest version when unversioned) → (versioned key id, wrapped)."""
        ...

    def unwrap_key(self, key_id: str, wrapped: bytes) -> bytes:
        """Unwrap `wrapped` with the versioned key `key_id`."""
        ...


class Kek(Protocol):
    """A key-encryption key: wraps data keys under its id, and unwraps what an id it owns wrapped."""

    @property
    def label(self) -> str: ...

    @property
    def current_id(self) -> str | None:
        """The id `wrap` will use, when known without calling out."""
        ...

    def owns(self, kek_id: str) -> bool: ...

    def wrap(self, data_key: bytes) -> tuple[str, bytes]: ...

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes: ...


def local_key_id(key: bytes) -> str:
    """The id of a local key: the first 8 hex characters of its SHA-256 (`base64 -d | sha256sum`)."""
    return hashlib.sha256(key).hexdigest()[:8]


def new_key() -> str:
    """A fresh local key: 32 random bytes, base64 (the same as `openssl rand -base64 32`)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


class LocalKey:
    """A 256-bit AES key-encryption key held in memory (from the setting or the local key file)."""

    __slots__ = ("_key", "id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("a local key-encryption key is 32 bytes")
        self._key = key
        self.id = local_key_id(key)

    @property
    def label(self) -> str:
        return self.id

    @property
    def current_id(self) -> str:
        return self.id

    def owns(self, kek_id: str) -> bool:
        return kek_id == self.id

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        return self.id, aes_key_wrap(self._key, data_key)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._key, wrapped)
        except (InvalidUnwrap, ValueError):
            raise IdentityInvalid(
                f"Stored credential cannot be opened: its data key does not unwrap with key {self.id}"
            ) from None

    def __repr__(self) -> str:
        return f"LocalKey(id={self.id!r})"


class DataKeyCache:
    """A bounded LRU of unwrapped data keys, each kept at most `ttl` seconds (thread-safe)."""

    def __init__(
        self,
        *,
        max_entries: int = UNWRAP_CACHE_ENTRIES,
        ttl: float = UNWRAP_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def _slot(kek_id: str, wrapped: bytes) -> bytes:
        return hashlib.sha256(kek_id.encode("ascii") + b"\0" + wrapped).digest()

    def get(self, kek_id: str, wrapped: bytes) -> bytes | None:
        slot = self._slot(kek_id, wrapped)
        with self._lock:
            entry = self._entries.get(slot)
            if entry is None:
                return None
            if self._clock() - entry[0] > self._ttl:
                del self._entries[slot]
                return None
            self._entries.move_to_end(slot)
            return entry[1]

    def put(self, kek_id: str, wrapped: bytes, data_key: bytes) -> None:
        slot = self._slot(kek_id, wrapped)
        with self._lock:
            self._entries[slot] = (self._clock(), data_key)
            self._entries.move_to_end(slot)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DataKeyCache(entries={len(self)})"


class VaultKey:
    """A Key Vault RSA key-encryption key; unwrapped data keys are cached briefly (`DataKeyCache`).

    An unversioned URL wraps with the key's current version, so a Key Vault rotation takes effect
    without a settings change; envelopes record the version, so older ones still open. It owns
    every version of its key, and nothing else: an envelope naming another vault or key is refused
    before any call, so a forged envelope cannot make the identity talk to another host.
    """

    def __init__(self, url: KeyVaultKeyUrl, client: KeyWrapClient, *, cache: DataKeyCache | None = None) -> None:
        self.url = url
        self._client = client
        self._cache = cache if cache is not None else DataKeyCache()

    @property
    def label(self) -> str:
        return self.url.text

    @property
    def current_id(self) -> str | None:
        # Unversioned: the current version is only known after asking Key Vault.
        return self.url.text if self.url.version else None

    def owns(self, kek_id: str) -> bool:
        other = parse_key_vault_url(kek_id)
        return other is not None and other.version is not None and self.url.same_key(other)

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        key_id, wrapped = self._client.wrap_key(self.url.text, data_key)
        used = parse_key_vault_url(key_id)
        if used is None or used.version is None or not self.url.same_key(used):
            raise ConfigError(f"Key Vault wrapped with an unexpected key instead of {self.url.text}")
        if self.url.version and used.version != self.url.version:
            raise ConfigError(f"Key Vault wrapped with another version than {self.url.text}")
        return used.text, wrapped

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        cached = self._cache.get(kek_id, wrapped)
        if cached is not None:
            return cached
        data_key = self._client.unwrap_key(kek_id, wrapped)
        if len(data_key) != KEY_BYTES:
            raise IdentityInvalid(f"Stored credential cannot be opened: its data key does not unwrap with {kek_id}")
        self._cache.put(kek_id, wrapped, data_key)
        return data_key

    def __repr__(self) -> str:
        return f"VaultKey(url={self.url.text!r})"
