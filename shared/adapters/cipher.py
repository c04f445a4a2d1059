"""Envelope encryption of stored credentials (OAuth tokens, refresh tokens, PATs).

Each `seal` draws a fresh 256-bit data key and encrypts with AES-256-GCM, binding a `context` (the
integration's account id plus a purpose label) as associated data, so a sealed value opens only for
the row it was written to. The data key is wrapped by a key-encryption key (KEK): a local AES-256 key
(AES key wrap, RFC 3394) or an Azure Key Vault RSA key (RSA-OAEP-256); the KEKs are in
`shared.adapters.keks`. The result is one ASCII string:

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
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.adapters.keks import (
    KEY_BYTES,
    UNWRAP_CACHE_ENTRIES,
    UNWRAP_CACHE_SECONDS,
    DataKeyCache,
    Kek,
    KeyVaultKeyUrl,
    KeyWrapClient,
    LocalKey,
    VaultKey,
    is_key_vault_url,
    local_key_id,
    new_key,
    parse_key_vault_url,
)
from shared.core.errors import ConfigError, IdentityInvalid, InvalidInput

# The key-encryption keys live in `shared.adapters.keks`; their names stay importable from here.
__all__ = [
    "KEY_BYTES", "MAX_PLAINTEXT_BYTES", "SETTING", "UNWRAP_CACHE_ENTRIES", "UNWRAP_CACHE_SECONDS", "VERSION",
    "Cipher", "DataKeyCache", "Kek", "KeyVaultKeyUrl", "KeyWrapClient", "LocalKey", "VaultKey",
    "cipher_from_setting", "envelope_key_id", "is_envelope", "is_key_vault_url", "local_key_id", "new_key",
    "parse_key_vault_url",
]

SETTING = "TOKEN_ENCRYPTION_KEY"
VERSION = "v1"
NONCE_BYTES = 12
TAG_BYTES = 16
# A sealed 16 KiB credential is about 22,000 characters: well inside Table Storage's 64 KiB
# (32K UTF-16 characters) string property limit.
MAX_PLAINTEXT_BYTES = 16 * 1024
MAX_ENVELOPE_CHARS = 32 * 1024

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_KEK_ID = re.compile(r"[A-Za-z0-9._:/-]{1,512}")
_LOCAL_KEY = re.compile(r"[A-Za-z0-9+/_-]{43}=?")


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
