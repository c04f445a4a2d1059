"""Envelope encryption of stored credentials (OAuth tokens, refresh tokens, PATs).

Each `seal` draws a fresh 256-bit data key and encrypts with AES-256-GCM, binding a `context` (the
integration's account id plus a purpose label) as associated data, so a sealed value opens only for
the row it was written to. The data key is wrapped by a key-encryption key (KEK): a local AES-256 key
(AES key wrap, RFC 3394) or an Azure Key Vault RSA key (RSA-OAEP-256, through a `KeyWrapClient`;
`shared.adapters.keyvault` is the real one). The result is one ASCII string:

    v1.<kek id>.<wrapped data key>.<nonce>.<ciphertext and tag>

The last three parts are unpadded base64url. The KEK id is the first 8 hex characters of SHA-256
of a local key, or the versioned Key Vault key URL (which may itself contain dots; the parts after
it never do). `TOKEN_ENCRYPTION_KEY` lists KEKs newest first: `seal` uses the first, `open` the one
the envelope names, `rewrap` moves an envelope to the first. That is the whole rotation story.

I/O: only the key wrap client and the optional local key file. Errors never carry key material,
plaintext or the envelope itself.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from shared.core.errors import ConfigError, IdentityInvalid, InvalidInput

SETTING = "TOKEN_ENCRYPTION_KEY"
VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# A sealed 16 KiB credential is about 22,000 characters: well inside Table Storage's 64 KiB
# (32K UTF-16 characters) string property limit.
MAX_PLAINTEXT_BYTES = 16 * 1024
MAX_ENVELOPE_CHARS = 32 * 1024
UNWRAP_CACHE_ENTRIES = 512
UNWRAP_CACHE_SECONDS = 600.0

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_KEK_ID = re.compile(r"[A-Za-z0-9._:/-]{1,512}")
_LOCAL_KEY = re.compile(r"[A-Za-z0-9+/_-]{43}=?")
# https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates#object-identifiers
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


# ---------------------------------------------------------------- envelopes


@dataclass(frozen=True, repr=False)
class _Envelope:
    kek_id: str
    wrapped: bytes
    nonce: bytes
    ciphertext: bytes


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict unpadded base64url: None unless `text` is the canonical encoding of some bytes."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64encode(data) == text else None


_MALFORMED = "Stored credential is not a valid sealed value"


def _parse(envelope: object) -> _Envelope:
    if not isinstance(envelope, str) or not envelope.isascii() or len(envelope) > MAX_ENVELOPE_CHARS:
        raise IdentityInvalid(_MALFORMED)
    version, dot, rest = envelope.partition(".")
    if version != VERSION or not dot:
        raise IdentityInvalid(f"{_MALFORMED} (not a {VERSION} envelope)")
    parts = rest.rsplit(".", 3)
    if len(parts) != 4 or not _KEK_ID.fullmatch(parts[0]):
        raise IdentityInvalid(_MALFORMED)
    wrapped, nonce, ciphertext = (_b64decode(part) for part in parts[1:])
    if wrapped is None or nonce is None or ciphertext is None:
        raise IdentityInvalid(f"{_MALFORMED} (bad base64url)")
    if len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES or len(wrapped) < KEY_BYTES:
        raise IdentityInvalid(f"{_MALFORMED} (truncated)")
    return _Envelope(parts[0], wrapped, nonce, ciphertext)


def is_envelope(value: object) -> bool:
    """True when `value` is shaped like a sealed value (so a store can tell legacy plaintext apart)."""
    try:
        _parse(value)
    except IdentityInvalid:
        return False
    return True


def envelope_key_id(envelope: str) -> str:
    """The id of the key-encryption key that wrapped `envelope` (for rotation reports)."""
    return _parse(envelope).kek_id


def _associated_data(context: str) -> bytes:
    if not isinstance(context, str) or not context:
        raise ValueError("a cipher context is a non-empty string, e.g. '<account id>/ado-identity'")
    return f"{VERSION}\0{context}".encode()


class Cipher:
    """Seals and opens credentials under the key-encryption keys of `TOKEN_ENCRYPTION_KEY`.

    `keys` are newest first: `seal` wraps with the first; `open` uses whichever key the envelope
    names. Thread-safe. `repr` shows key ids only.
    """

    def __init__(self, keys: Sequence[Kek]) -> None:
        if not keys:
            raise ConfigError(f"Setting {SETTING} holds no key")
        self._keys = tuple(keys)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The keys' ids (local) or URLs (Key Vault), current first."""
        return tuple(key.label for key in self._keys)

    def seal(self, context: str, plaintext: bytes) -> str:
        """Encrypt `plaintext` for `context` under a fresh data key wrapped by the current key.

        Raises:
            InvalidInput: `plaintext` is longer than MAX_PLAINTEXT_BYTES.
        """
        associated_data = _associated_data(context)
        if not isinstance(plaintext, bytes):
            raise TypeError("seal() takes bytes")
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise InvalidInput(f"Credential is longer than {MAX_PLAINTEXT_BYTES} bytes")
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, associated_data)
        kek_id, wrapped = self._keys[0].wrap(data_key)
        return ".".join((VERSION, kek_id, _b64encode(wrapped), _b64encode(nonce), _b64encode(ciphertext)))

    def open(self, context: str, envelope: str) -> bytes:
        """The plaintext sealed for `context`.

        Raises:
            IdentityInvalid: the envelope is malformed, truncated or tampered with, or was sealed
                for another context (the integration's credential must be installed again).
            ConfigError: the key that sealed it is not in `TOKEN_ENCRYPTION_KEY` (any more).
        """
        associated_data = _associated_data(context)
        parsed = _parse(envelope)
        data_key = self._owner(parsed.kek_id).unwrap(parsed.kek_id, parsed.wrapped)
        try:
            return AESGCM(data_key).decrypt(parsed.nonce, parsed.ciphertext, associated_data)
        except InvalidTag:
            raise IdentityInvalid(
                "Stored credential failed its integrity check (tampered with, or sealed for another row)"
            ) from None

    def rewrap(self, context: str, envelope: str) -> str | None:
        """`envelope` re-sealed (fresh data key) under the current key; None when it already is.

        A rotation re-seals every stored credential with this, then drops the old key. Opening
        first means a value that does not open for `context` is never re-sealed.
        """
        kek_id = _parse(envelope).kek_id
        if kek_id == self._keys[0].current_id:
            return None
        sealed = self.seal(context, self.open(context, envelope))
        return None if _parse(sealed).kek_id == kek_id else sealed

    def _owner(self, kek_id: str) -> Kek:
        for key in self._keys:
            if key.owns(kek_id):
                return key
        raise ConfigError(f"Stored credential was sealed with key {kek_id}, which {SETTING} does not hold")

    def __repr__(self) -> str:
        return f"Cipher(keys={list(self.key_ids)!r})"


# ---------------------------------------------------------------- settings


def cipher_from_setting(
    value: str | None,
    *,
    key_file: Path | None = None,
    key_vault: KeyWrapClient | None = None,
    azure_client_id: str | None = None,
) -> Cipher:
    """The cipher for a `TOKEN_ENCRYPTION_KEY` value.

    `value` is comma-separated, newest first; each entry is a base64 32-byte key (standard or
    url-safe alphabet) or a Key Vault key URL `https://<vault>.vault.azure.net/keys/<name>[/<version>]`.
    Key Vault entries use `key_vault`, or by default `shared.adapters.keyvault.KeyVaultKeys` as the
    managed identity `azure_client_id` (`AZURE_CLIENT_ID`).

    Unset or blank: with `key_file` (local runs: e.g. `.azurite/token-key`), the keys in that
    file, which is created with one new key and mode 0600 when missing; without it (on Azure),
    ConfigError. The caller decides which applies.

    Raises:
        ConfigError: naming the setting (or the file) and the entry, never its value.
    """
    vault_client: list[KeyWrapClient] = [key_vault] if key_vault is not None else []

    def vault() -> KeyWrapClient:
        if not vault_client:
            from shared.adapters.keyvault import KeyVaultKeys

            vault_client.append(KeyVaultKeys.with_identity(azure_client_id))
        return vault_client[0]

    if value is not None and value.strip():
        return Cipher(_keys(value, f"Setting {SETTING}", vault))
    if key_file is None:
        raise ConfigError(f"Setting {SETTING} is required: a Key Vault key URL, or base64 32-byte keys (newest first)")
    return Cipher(_keys(_read_or_create_key_file(key_file), f"Token key file {key_file}", vault))


def _keys(text: str, source: str, vault: Callable[[], KeyWrapClient]) -> list[Kek]:
    keys: list[Kek] = []
    for position, raw in enumerate(text.split(","), start=1):
        entry = raw.strip()
        if not entry:
            raise ConfigError(f"{source}: entry {position} is empty")
        if entry.lower().startswith("https:"):
            url = parse_key_vault_url(entry)
            if url is None:
                raise ConfigError(
                    f"{source}: entry {position} is not a Key Vault key URL "
                    "(https://<vault>.vault.azure.net/keys/<name>[/<version>])"
                )
            new: Kek = VaultKey(url, vault())
        else:
            key = _decode_key(entry)
            if key is None:
                raise ConfigError(
                    f"{source}: entry {position} is neither a base64-encoded 32-byte key nor a Key Vault key URL"
                )
            new = LocalKey(key)
        for earlier, known in enumerate(keys, start=1):
            if _same(known, new):
                raise ConfigError(f"{source}: entry {position} is the same key as entry {earlier}")
        keys.append(new)
    return keys


def _same(a: Kek, b: Kek) -> bool:
    if isinstance(a, VaultKey) and isinstance(b, VaultKey):
        return a.url.same_key(b.url)
    return a.label == b.label


def _decode_key(entry: str) -> bytes | None:
    if not _LOCAL_KEY.fullmatch(entry):
        return None
    standard = entry.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        key = base64.b64decode(standard + "=", validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def _read_or_create_key_file(path: Path) -> str:
    """The key file's text; a missing file is created atomically (mode 0600) with one new key."""
    try:
        try:
            return path.read_text(encoding="ascii")
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="ascii") as file:
                file.write(new_key() + "\n")
            # A hard link appears complete and never replaces a key another process made meanwhile.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise ConfigError(f"Token key file {path} cannot be read or created ({reason}); set {SETTING}") from None
