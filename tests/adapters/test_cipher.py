"""Envelope encryption of stored credentials (shared/adapters/cipher.py, keks.py) and its Key Vault adapter
(shared/adapters/keyvault.py). No network: Key Vault is an in-memory double, or the real SDK client
doing local RSA with a generated key (`CryptographyClient.from_jwk`).
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from azure.identity import CredentialUnavailableError
from azure.keyvault.keys import JsonWebKey, KeyType
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.adapters import cipher as cipher_module
from shared.adapters.cipher import Cipher, cipher_from_setting, envelope_key_id, is_envelope
from shared.adapters.keks import (
    DataKeyCache,
    LocalKey,
    VaultKey,
    is_key_vault_url,
    local_key_id,
    new_key,
    parse_key_vault_url,
)
from shared.adapters.keyvault import KeyVaultKeys
from shared.core.errors import BundleError, ConfigError, IdentityInvalid, InvalidInput, TransientError

KEY_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes 0..31
KEY_A_ID = "630dcd29"
KEY_B = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="  # bytes 32..63
KEY_B_ID = "72dbb733"
KEY_C = "4OHi4+Tl5ufo6err7O3u7/Dx8vP09fb3+Pn6+/z9/v8="  # bytes 224..255 (has + and /)
KEY_C_URLSAFE = "4OHi4-Tl5ufo6err7O3u7_Dx8vP09fb3-Pn6-_z9_v8"
KEY_C_ID = "9432c1a7"

ACCOUNT = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"
OTHER_ACCOUNT = "0f8fad5b-d9cb-469f-a165-70867728950e"
CONTEXT = f"{ACCOUNT}/ado-identity"
TOKEN = b'{"kind": "oauth", "access_token": "eyJ0eXAiOiJKV1Qi.payload.sig", "refresh_token": "M.C5_BAY.-CRt"}'
PAT = b"k5r7z3q2w6x4m8n1p0o9i8u7y6t5r4e3w2q1a2s3d4f5g6h7j8k9"

VAULT = "https://kv-sync.vault.azure.net"
KEY_URL = f"{VAULT}/keys/token-key"
V1 = "0123456789abcdef0123456789abcdef"
V2 = "fedcba9876543210fedcba9876543210"


def local(*keys: str) -> Cipher:
    return cipher_from_setting(",".join(keys))


# ---------------------------------------------------------------- seal and open


def test_round_trip_and_envelope_shape() -> None:
    cipher = local(KEY_A)
    envelope = cipher.seal(CONTEXT, TOKEN)
    assert envelope.isascii() and envelope.isprintable()
    version, kek_id, wrapped, nonce, ciphertext = envelope.split(".")
    assert (version, kek_id) == ("v1", KEY_A_ID)
    assert len(wrapped) == 54  # 40 bytes of AES key wrap, unpadded base64url
    assert len(nonce) == 16  # 12 bytes
    assert len(ciphertext) == len(cipher_module._b64encode(TOKEN + bytes(16)))
    assert cipher.open(CONTEXT, envelope) == TOKEN
    assert envelope_key_id(envelope) == KEY_A_ID


def test_every_seal_uses_a_fresh_data_key_and_nonce() -> None:
    cipher = local(KEY_A)
    first, second = (cipher.seal(CONTEXT, PAT).split(".") for _ in range(2))
    assert first[2] != second[2] and first[3] != second[3] and first[4] != second[4]


@pytest.mark.parametrize("plaintext", [b"", b"x", PAT, TOKEN, bytes(range(256)) * 64])
def test_any_bytes_round_trip(plaintext: bytes) -> None:
    cipher = local(KEY_A)
    assert cipher.open(CONTEXT, cipher.seal(CONTEXT, plaintext)) == plaintext


def test_envelopes_stay_small_enough_for_a_table_property() -> None:
    cipher = local(KEY_A)
    envelope = cipher.seal(CONTEXT, b"x" * cipher_module.MAX_PLAINTEXT_BYTES)
    assert len(envelope) < 32 * 1024  # Table Storage: 64 KiB per string property, UTF-16
    with pytest.raises(InvalidInput):
        cipher.seal(CONTEXT, b"x" * (cipher_module.MAX_PLAINTEXT_BYTES + 1))


@pytest.mark.parametrize("context", ["", None, b"ctx"])
def test_context_is_a_non_empty_string(context: Any) -> None:
    cipher = local(KEY_A)
    with pytest.raises(ValueError):
        cipher.seal(context, PAT)
    with pytest.raises(ValueError):
        cipher.open(context, cipher.seal(CONTEXT, PAT))


def test_seal_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        local(KEY_A).seal(CONTEXT, "text")  # type: ignore[arg-type]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "context",
    [f"{OTHER_ACCOUNT}/ado-identity", f"{ACCOUNT}/tracker-webhook", f"{ACCOUNT}/ado-identity ", ACCOUNT],
)
def test_a_sealed_value_does_not_open_for_another_row(context: str) -> None:
    cipher = local(KEY_A)
    envelope = cipher.seal(CONTEXT, TOKEN)
    with pytest.raises(IdentityInvalid, match="integrity"):
        cipher.open(context, envelope)


def test_every_single_character_change_is_refused() -> None:
    cipher = local(KEY_A, KEY_B)
    envelope = cipher.seal(CONTEXT, PAT)
    for position, char in enumerate(envelope):
        for replacement in {"A", "B", "_", "-", "0", ".", "="} - {char}:
            tampered = envelope[:position] + replacement + envelope[position + 1 :]
            with pytest.raises((IdentityInvalid, ConfigError)):
                cipher.open(CONTEXT, tampered)


def test_every_truncation_and_extension_is_refused() -> None:
    cipher = local(KEY_A)
    envelope = cipher.seal(CONTEXT, PAT)
    for end in range(len(envelope)):
        with pytest.raises((IdentityInvalid, ConfigError)):
            cipher.open(CONTEXT, envelope[:end])
    for suffix in ("A", "AA", "AAAA", ".", ".AAAA", "\n", " "):
        with pytest.raises(IdentityInvalid):
            cipher.open(CONTEXT, envelope + suffix)


def test_swapping_parts_between_envelopes_is_refused() -> None:
    cipher = local(KEY_A)
    one = cipher.seal(CONTEXT, PAT).split(".")
    two = cipher.seal(CONTEXT, PAT).split(".")
    for index in (2, 3, 4):
        mixed = list(one)
        mixed[index] = two[index]
        with pytest.raises(IdentityInvalid):
            cipher.open(CONTEXT, ".".join(mixed))


@pytest.mark.parametrize(
    "envelope",
    [
        "",
        "v1",
        "v1.",
        "v1....",
        "v2.630dcd29.AAAA.AAAA.AAAA",
        "V1.630dcd29.AAAA.AAAA.AAAA",
        "v1.630dcd29.AAAA.AAAA",
        "v1.630dcd29.AAAA.AAAAAAAAAAAAAAAA.AAAA",  # tag shorter than 16 bytes
        "v1.630dcd29.AA==.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.630dcd29.A+/A.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.630 dcd29.AAAA.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.63\u00e9dcd29.AAAA.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1." + "A" * 40_000,
        PAT.decode(),
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln",
    ],
)
def test_malformed_envelopes_are_refused(envelope: str) -> None:
    with pytest.raises(IdentityInvalid):
        local(KEY_A).open(CONTEXT, envelope)
    assert not is_envelope(envelope)


def test_non_canonical_base64_is_refused() -> None:
    cipher = local(KEY_A)
    envelope = cipher.seal(CONTEXT, PAT)
    parts = envelope.split(".")
    # 16 base64 chars hold exactly 12 bytes; a 12-byte nonce padded differently is not canonical.
    assert len(parts[3]) == 16
    wrapped = parts[2]  # 54 chars for 40 bytes: the last char carries 2 unused bits
    last = wrapped[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bits = alphabet[alphabet.index(last) ^ 1]  # differs only in an unused bit
    parts[2] = wrapped[:-1] + same_bits
    with pytest.raises(IdentityInvalid, match="base64url"):
        cipher.open(CONTEXT, ".".join(parts))


def test_an_unknown_key_names_the_setting_and_the_key_id() -> None:
    envelope = local(KEY_A).seal(CONTEXT, PAT)
    with pytest.raises(ConfigError) as caught:
        local(KEY_B).open(CONTEXT, envelope)
    assert "TOKEN_ENCRYPTION_KEY" in caught.value.message and KEY_A_ID in caught.value.message


def test_is_envelope() -> None:
    envelope = local(KEY_A).seal(CONTEXT, PAT)
    assert is_envelope(envelope)
    for value in (None, 42, "", PAT.decode(), TOKEN.decode(), "v1.x", envelope + "\n"):
        assert not is_envelope(value)


# ---------------------------------------------------------------- no secret leaks


def test_errors_never_carry_keys_plaintext_or_the_envelope() -> None:
    cipher = local(KEY_A, KEY_B)
    envelope = cipher.seal(CONTEXT, PAT)
    failures: list[BundleError] = []
    attempts = [
        lambda: cipher.open(f"{OTHER_ACCOUNT}/ado-identity", envelope),
        lambda: cipher.open(CONTEXT, envelope[:-3]),
        lambda: cipher.open(CONTEXT, envelope[:-3] + "AAA"),
        lambda: local(KEY_C).open(CONTEXT, envelope),
        lambda: cipher.open(CONTEXT, PAT.decode()),
        lambda: cipher.open(CONTEXT, envelope.replace(envelope.split(".")[2], "A" * 54)),
        lambda: cipher_from_setting(KEY_A[:-2]),
        lambda: cipher_from_setting(f"{KEY_A},{KEY_A}"),
        lambda: cipher_from_setting(f"{KEY_A},{PAT.decode()}"),
        lambda: cipher.seal(CONTEXT, PAT * 1000),
    ]
    for attempt in attempts:
        with pytest.raises(BundleError) as caught:
            attempt()
        failures.append(caught.value)
    secrets_ = [KEY_A, KEY_A[:20], KEY_B, KEY_B[:20], KEY_C, PAT.decode(), PAT.decode()[:12], envelope, envelope[-20:]]
    for failure in failures:
        text = f"{failure} {failure!r} {failure.message}"
        for secret in secrets_:
            assert secret not in text, (failure, secret)
        # No chained exception that could carry key material into a traceback.
        assert failure.__cause__ is None and (failure.__context__ is None or failure.__suppress_context__)


def test_reprs_show_key_ids_only() -> None:
    cipher = local(KEY_A, KEY_C)
    text = repr(cipher) + str(cipher) + repr(LocalKey(bytes(range(32))))
    assert KEY_A_ID in text and KEY_C_ID in text
    for secret in (KEY_A, KEY_C, KEY_C_URLSAFE, bytes(range(32)).hex(), repr(bytes(range(32)))):
        assert secret not in text
    vault = VaultKey(parse_key_vault_url(KEY_URL), FakeVault())  # type: ignore[arg-type]
    cache = DataKeyCache()
    cache.put("id", b"wrapped", bytes(range(32)))
    assert repr(vault) == f"VaultKey(url='{KEY_URL}')"
    assert repr(cache) == "DataKeyCache(entries=1)"
    assert repr(KeyVaultKeys(credential=object())) == "KeyVaultKeys()"  # type: ignore[arg-type]


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        (KEY_A, [KEY_A_ID]),
        (f"  {KEY_A}  ", [KEY_A_ID]),
        (KEY_A.rstrip("="), [KEY_A_ID]),
        (KEY_C, [KEY_C_ID]),
        (KEY_C_URLSAFE, [KEY_C_ID]),
        (f"{KEY_B}, {KEY_A}", [KEY_B_ID, KEY_A_ID]),
        (f"{KEY_A},{KEY_B},{KEY_C}", [KEY_A_ID, KEY_B_ID, KEY_C_ID]),
    ],
)
def test_local_keys_from_the_setting(value: str, ids: list[str]) -> None:
    assert list(cipher_from_setting(value).key_ids) == ids


def test_key_ids_are_sha256_prefixes() -> None:
    assert local_key_id(bytes(range(32))) == KEY_A_ID
    assert len(new_key()) == 44 and cipher_from_setting(new_key()).key_ids[0] != KEY_A_ID


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("", None),
        ("   ", None),
        (None, None),
        (KEY_A[:-2], "entry 1"),
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", "entry 1"),  # 31 bytes
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", "entry 1"),  # 33 bytes
        (KEY_A.replace("A", "!", 1), "entry 1"),
        (f"{KEY_A},", "entry 2"),
        (f"{KEY_A},,{KEY_B}", "entry 2"),
        (f"{KEY_A};{KEY_B}", "entry 1"),
        (f"{KEY_A},{KEY_A}", "entry 2"),
        (f"{KEY_A},{KEY_A.rstrip('=')}", "entry 2"),
        (f"{KEY_C},{KEY_C_URLSAFE}", "entry 2"),
        ("https://example.com/keys/token-key", "entry 1"),
        ("http://kv-sync.vault.azure.net/keys/token-key", "entry 1"),
        (f"{KEY_A},https://kv-sync.vault.azure.net/secrets/token-key", "entry 2"),
        (f"{KEY_URL},{KEY_URL}/{V1}", "entry 2"),
    ],
)
def test_malformed_settings_name_the_setting_and_entry_but_not_the_value(value: str | None, entry: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        cipher_from_setting(value, key_vault=FakeVault())
    message = caught.value.message
    assert "TOKEN_ENCRYPTION_KEY" in message
    if entry:
        assert entry in message
    for secret in (KEY_A, KEY_A[:-2], KEY_B, KEY_C, KEY_C_URLSAFE):
        assert secret not in message


# ---------------------------------------------------------------- local key file


def test_unset_setting_uses_a_key_file_created_with_0600(tmp_path: Path) -> None:
    key_file = tmp_path / ".azurite" / "token-key"
    first = cipher_from_setting(None, key_file=key_file)
    assert key_file.is_file()
    if os.name == "posix":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = cipher_from_setting("", key_file=key_file)
    assert again.key_ids == first.key_ids
    assert again.open(CONTEXT, first.seal(CONTEXT, PAT)) == PAT
    assert [p.name for p in key_file.parent.iterdir()] == ["token-key"]  # no temporary left behind


def test_the_setting_wins_over_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "token-key"
    assert cipher_from_setting(KEY_A, key_file=key_file).key_ids == (KEY_A_ID,)
    assert not key_file.exists()


def test_concurrent_first_runs_agree_on_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "token-key"
    results: list[tuple[str, ...]] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        results.append(cipher_from_setting(None, key_file=key_file).key_ids)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1


def test_key_file_holds_the_same_syntax_as_the_setting(tmp_path: Path) -> None:
    key_file = tmp_path / "token-key"
    key_file.write_text(f"{KEY_B},{KEY_A}\n")
    assert cipher_from_setting(None, key_file=key_file).key_ids == (KEY_B_ID, KEY_A_ID)


@pytest.mark.parametrize("content", ["not a key\n", "", f"{KEY_A},\n"])
def test_a_bad_key_file_names_the_file(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "token-key"
    key_file.write_text(content)
    with pytest.raises(ConfigError, match="token-key"):
        cipher_from_setting(None, key_file=key_file)


def test_an_unusable_key_file_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "token-key").mkdir()
    with pytest.raises(ConfigError, match="TOKEN_ENCRYPTION_KEY"):
        cipher_from_setting(None, key_file=tmp_path / "token-key")
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(ConfigError):
        cipher_from_setting(None, key_file=tmp_path / "blocker" / "token-key")


# ---------------------------------------------------------------- rotation (local keys)


def test_local_rotation_loses_no_integration() -> None:
    accounts = [ACCOUNT, OTHER_ACCOUNT, "a1", "a2", "a3"]
    old = local(KEY_A)
    stored = {account: old.seal(f"{account}/ado-identity", PAT + account.encode()) for account in accounts}

    # 1. The new key goes first, the old one stays after it: everything still opens.
    rotating = local(KEY_B, KEY_A)
    for account, envelope in stored.items():
        assert rotating.open(f"{account}/ado-identity", envelope) == PAT + account.encode()

    # New writes use the new key meanwhile.
    assert envelope_key_id(rotating.seal(CONTEXT, PAT)) == KEY_B_ID

    # 2. Re-seal every stored identity; a second pass finds nothing to do.
    for account, envelope in list(stored.items()):
        rewrapped = rotating.rewrap(f"{account}/ado-identity", envelope)
        assert rewrapped is not None and envelope_key_id(rewrapped) == KEY_B_ID
        stored[account] = rewrapped
    assert all(rotating.rewrap(f"{a}/ado-identity", e) is None for a, e in stored.items())

    # 3. The old key is removed: every integration still opens.
    rotated = local(KEY_B)
    for account, envelope in stored.items():
        assert rotated.open(f"{account}/ado-identity", envelope) == PAT + account.encode()


def test_removing_the_old_key_too_early_is_a_clear_config_error() -> None:
    envelope = local(KEY_A).seal(CONTEXT, PAT)
    with pytest.raises(ConfigError, match=KEY_A_ID):
        local(KEY_B).open(CONTEXT, envelope)


def test_rewrap_never_reseals_a_value_that_does_not_open() -> None:
    rotating = local(KEY_B, KEY_A)
    envelope = local(KEY_A).seal(CONTEXT, PAT)
    with pytest.raises(IdentityInvalid):
        rotating.rewrap(f"{OTHER_ACCOUNT}/ado-identity", envelope)
    with pytest.raises(IdentityInvalid):
        rotating.rewrap(CONTEXT, envelope[:-4])


# ---------------------------------------------------------------- Key Vault key URLs


@pytest.mark.parametrize(
    ("url", "host", "name", "version"),
    [
        (KEY_URL, "kv-sync.vault.azure.net", "token-key", None),
        (f"{KEY_URL}/", "kv-sync.vault.azure.net", "token-key", None),
        (f"{KEY_URL}/{V1}", "kv-sync.vault.azure.net", "token-key", V1),
        ("https://KV-Sync.Vault.Azure.NET/keys/Token-Key", "kv-sync.vault.azure.net", "Token-Key", None),
        ("https://kv-sync.vault.azure.net:443/keys/token-key", "kv-sync.vault.azure.net", "token-key", None),
        ("https://kv-cn.vault.azure.cn/keys/k", "kv-cn.vault.azure.cn", "k", None),
        ("https://kv-gov.vault.usgovcloudapi.net/keys/k", "kv-gov.vault.usgovcloudapi.net", "k", None),
        ("https://hsm-sync.managedhsm.azure.net/keys/k", "hsm-sync.managedhsm.azure.net", "k", None),
    ],
)
def test_key_vault_urls_are_recognised(url: str, host: str, name: str, version: str | None) -> None:
    parsed = parse_key_vault_url(url)
    assert parsed is not None and (parsed.host, parsed.name, parsed.version) == (host, name, version)
    assert is_key_vault_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://kv-sync.vault.azure.net/keys/token-key",
        "https://kv-sync.vault.azure.net/secrets/token-key",
        "https://kv-sync.vault.azure.net/keys/",
        "https://kv-sync.vault.azure.net/keys/token-key/v1/extra",
        "https://kv-sync.vault.azure.net/keys/token_key",
        "https://kv-sync.vault.azure.net/keys/token-key?api-version=7.4",
        "https://kv-sync.vault.azure.net.evil.example/keys/token-key",
        "https://evil.example/kv-sync.vault.azure.net/keys/token-key",
        "https://user@kv-sync.vault.azure.net/keys/token-key",
        "https://kv-sync.vault.azure.net:8443/keys/token-key",
        "https://kv.vault.azure.net/keys/token-key",  # vault names have 3-24 characters
        "https://vault.azure.net/keys/token-key",
        KEY_A,
        "",
    ],
)
def test_other_urls_are_not_key_vault_keys(url: str) -> None:
    assert not is_key_vault_url(url)


def test_a_key_vault_setting_builds_without_network() -> None:
    # The default client (managed identity) is created lazily and makes no call until used.
    cipher = cipher_from_setting(f"{KEY_URL}, {KEY_A}", azure_client_id="00000000-0000-0000-0000-000000000001")
    assert cipher.key_ids == (KEY_URL, KEY_A_ID)


# ---------------------------------------------------------------- Key Vault through a double


class FakeVault:
    """An in-memory Key Vault key: opaque wrapped keys per version, a rotation, call counts."""

    def __init__(self, url: str = KEY_URL, versions: tuple[str, ...] = (V1,)) -> None:
        self.url = url
        self.versions = list(versions)
        self.disabled: set[str] = set()
        self._wrapped: dict[tuple[str, bytes], bytes] = {}
        self.wraps = 0
        self.unwraps = 0

    def rotate(self, version: str) -> None:
        self.versions.append(version)

    def wrap_key(self, key_url: str, data_key: bytes) -> tuple[str, bytes]:
        self.wraps += 1
        parsed = parse_key_vault_url(key_url)
        assert parsed is not None and parsed.text.startswith(self.url)
        version = parsed.version or self.versions[-1]
        wrapped = secrets.token_bytes(256)
        self._wrapped[(version, wrapped)] = data_key
        return f"{self.url}/{version}", wrapped

    def unwrap_key(self, key_id: str, wrapped: bytes) -> bytes:
        self.unwraps += 1
        version = key_id.rsplit("/", 1)[1]
        if version in self.disabled:
            raise ConfigError(f"Key Vault refused wrap/unwrap with {key_id} (403)")
        try:
            return self._wrapped[(version, wrapped)]
        except KeyError:
            raise IdentityInvalid(f"Key Vault could not unwrap with {key_id}") from None


def vault_cipher(fake: FakeVault, setting: str = KEY_URL) -> Cipher:
    return cipher_from_setting(setting, key_vault=fake)


def test_key_vault_envelopes_record_the_versioned_key() -> None:
    fake = FakeVault()
    cipher = vault_cipher(fake)
    envelope = cipher.seal(CONTEXT, TOKEN)
    assert envelope.startswith(f"v1.{KEY_URL}/{V1}.")
    assert envelope_key_id(envelope) == f"{KEY_URL}/{V1}"
    assert is_envelope(envelope)
    assert cipher.open(CONTEXT, envelope) == TOKEN
    assert len(envelope) < 4096


def test_unwrapped_data_keys_are_cached_briefly_and_boundedly() -> None:
    now = [1000.0]
    fake = FakeVault()
    cache = DataKeyCache(max_entries=2, ttl=60.0, clock=lambda: now[0])
    cipher = Cipher([VaultKey(parse_key_vault_url(KEY_URL), fake, cache=cache)])  # type: ignore[arg-type]
    envelopes = [cipher.seal(f"{n}/ado-identity", PAT) for n in range(3)]

    cipher.open("0/ado-identity", envelopes[0])
    cipher.open("0/ado-identity", envelopes[0])
    assert fake.unwraps == 1  # a warm webhook does not call Key Vault again

    now[0] += 61
    cipher.open("0/ado-identity", envelopes[0])
    assert fake.unwraps == 2  # expired

    cipher.open("1/ado-identity", envelopes[1])
    cipher.open("2/ado-identity", envelopes[2])
    assert len(cache) == 2
    cipher.open("0/ado-identity", envelopes[0])
    assert fake.unwraps == 5  # least recently used was evicted


def test_a_cached_data_key_still_checks_the_context() -> None:
    fake = FakeVault()
    cipher = vault_cipher(fake)
    envelope = cipher.seal(CONTEXT, PAT)
    cipher.open(CONTEXT, envelope)
    with pytest.raises(IdentityInvalid):
        cipher.open(f"{OTHER_ACCOUNT}/ado-identity", envelope)


def test_key_vault_rotation_loses_no_integration() -> None:
    fake = FakeVault()
    cipher = vault_cipher(fake)
    stored = {account: cipher.seal(f"{account}/ado-identity", PAT) for account in ("a1", "a2", "a3")}

    fake.rotate(V2)  # az keyvault key rotate: a new version, the old one stays enabled
    assert envelope_key_id(cipher.seal(CONTEXT, PAT)) == f"{KEY_URL}/{V2}"
    for account, envelope in stored.items():
        assert cipher.open(f"{account}/ado-identity", envelope) == PAT

    for account, envelope in list(stored.items()):
        rewrapped = cipher.rewrap(f"{account}/ado-identity", envelope)
        assert rewrapped is not None and envelope_key_id(rewrapped) == f"{KEY_URL}/{V2}"
        stored[account] = rewrapped
    assert all(cipher.rewrap(f"{a}/ado-identity", e) is None for a, e in stored.items())

    fake.disabled.add(V1)  # the old version is disabled once nothing uses it
    fresh = vault_cipher(fake)  # a new process: empty cache
    for account, envelope in stored.items():
        assert fresh.open(f"{account}/ado-identity", envelope) == PAT


def test_a_pinned_version_knows_it_is_current_without_calling_out() -> None:
    fake = FakeVault(versions=(V1, V2))
    cipher = vault_cipher(fake, f"{KEY_URL}/{V2}")
    envelope = cipher.seal(CONTEXT, PAT)
    assert envelope_key_id(envelope) == f"{KEY_URL}/{V2}"
    calls = (fake.wraps, fake.unwraps)
    assert cipher.rewrap(CONTEXT, envelope) is None
    assert (fake.wraps, fake.unwraps) == calls


@pytest.mark.parametrize(
    "forged_key",
    [
        f"https://kv-evil.vault.azure.net/keys/token-key/{V1}",
        f"https://kv-sync.vault.azure.net/keys/other-key/{V1}",
        "https://kv-sync.vault.azure.net/keys/token-key",  # unversioned
        f"https://evil.example/keys/token-key/{V1}",
        KEY_A_ID,
    ],
)
def test_forged_key_ids_are_refused_before_any_key_vault_call(forged_key: str) -> None:
    fake = FakeVault()
    cipher = vault_cipher(fake)
    envelope = cipher.seal(CONTEXT, PAT)
    forged = envelope.replace(f"{KEY_URL}/{V1}", forged_key)
    fake.unwraps = 0
    with pytest.raises(ConfigError):
        cipher.open(CONTEXT, forged)
    assert fake.unwraps == 0


def test_a_wrapped_key_key_vault_cannot_unwrap_is_identity_invalid() -> None:
    fake = FakeVault()
    cipher = vault_cipher(fake)
    parts = cipher.seal(CONTEXT, PAT).split(".")
    parts[-3] = cipher_module._b64encode(secrets.token_bytes(256))
    with pytest.raises(IdentityInvalid):
        cipher.open(CONTEXT, ".".join(parts))


def test_key_vault_answering_with_another_key_is_refused() -> None:
    class Confused(FakeVault):
        def wrap_key(self, key_url: str, data_key: bytes) -> tuple[str, bytes]:
            return f"https://kv-evil.vault.azure.net/keys/token-key/{V1}", b"x" * 256

    with pytest.raises(ConfigError):
        vault_cipher(Confused()).seal(CONTEXT, PAT)


def test_moving_from_a_local_key_to_key_vault() -> None:
    fake = FakeVault()
    stored = local(KEY_A).seal(CONTEXT, PAT)
    migrating = vault_cipher(fake, f"{KEY_URL},{KEY_A}")
    assert migrating.open(CONTEXT, stored) == PAT
    moved = migrating.rewrap(CONTEXT, stored)
    assert moved is not None and envelope_key_id(moved) == f"{KEY_URL}/{V1}"
    assert vault_cipher(fake).open(CONTEXT, moved) == PAT


# ---------------------------------------------------------------- the real SDK client, locally


def _b(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


@pytest.fixture(scope="module")
def rsa_versions() -> dict[str, JsonWebKey]:
    """Two versions of an RSA key as Key Vault would hold them (private parts for local unwrap)."""
    versions = {}
    for version in (V1, V2):
        numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
        versions[version] = JsonWebKey(
            kid=f"{KEY_URL}/{version}",
            kty=KeyType.rsa,
            key_ops=["wrapKey", "unwrapKey"],
            n=_b(numbers.public_numbers.n),
            e=_b(numbers.public_numbers.e),
            d=_b(numbers.d),
            p=_b(numbers.p),
            q=_b(numbers.q),
            dp=_b(numbers.dmp1),
            dq=_b(numbers.dmq1),
            qi=_b(numbers.iqmp),
        )
    return versions


def test_key_vault_keys_with_the_sdk_client(rsa_versions: dict[str, JsonWebKey]) -> None:
    current = [V1]
    created: list[str] = []

    def factory(key_id: str, credential: Any) -> Any:
        created.append(key_id)
        parsed = parse_key_vault_url(key_id)
        assert parsed is not None
        return CryptographyClient.from_jwk(rsa_versions[parsed.version or current[0]])

    keys = KeyVaultKeys(credential=object(), client_factory=factory)  # type: ignore[arg-type]
    cipher = cipher_from_setting(KEY_URL, key_vault=keys)
    old = cipher.seal(CONTEXT, TOKEN)
    assert envelope_key_id(old) == f"{KEY_URL}/{V1}"
    assert len(old.split(".")[-3]) == 342  # RSA-2048 OAEP: 256 bytes

    current[0] = V2
    new = cipher.seal(CONTEXT, TOKEN)
    assert envelope_key_id(new) == f"{KEY_URL}/{V2}"
    assert cipher.open(CONTEXT, old) == TOKEN and cipher.open(CONTEXT, new) == TOKEN
    rewrapped = cipher.rewrap(CONTEXT, old)
    assert rewrapped is not None and envelope_key_id(rewrapped) == f"{KEY_URL}/{V2}"

    # Wraps use a fresh client (current version); unwraps reuse one client per version.
    before = len(created)
    fresh = cipher_from_setting(KEY_URL, key_vault=keys)
    fresh.open(CONTEXT, old)
    fresh.open(CONTEXT, new)
    assert len(created) == before


class RaisingClient:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def wrap_key(self, algorithm: Any, key: bytes) -> Any:
        raise self.error

    def unwrap_key(self, algorithm: Any, encrypted_key: bytes) -> Any:
        raise self.error


def http_error(status: int, headers: dict[str, str] | None = None) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status} with a body we never echo")
    error.status_code = status
    error.response = SimpleNamespace(headers=headers or {})  # type: ignore[assignment]
    return error


@pytest.mark.parametrize(
    ("error", "expected", "retry_after"),
    [
        (http_error(403), ConfigError, None),
        (http_error(401), ConfigError, None),
        (http_error(404), ConfigError, None),
        (http_error(400), IdentityInvalid, None),
        (http_error(409), ConfigError, None),
        (http_error(429, {"Retry-After": "7"}), TransientError, 7.0),
        (http_error(503), TransientError, None),
        (http_error(408), TransientError, None),
        (ServiceRequestError("connection refused"), TransientError, None),
        (ClientAuthenticationError("token request failed"), TransientError, None),
        (CredentialUnavailableError("no credential"), ConfigError, None),
    ],
)
def test_key_vault_errors_map_to_bundle_errors(error: Exception, expected: type, retry_after: float | None) -> None:
    keys = KeyVaultKeys(credential=object(), client_factory=lambda key_id, credential: RaisingClient(error))  # type: ignore[arg-type]
    for call in (lambda: keys.wrap_key(KEY_URL, bytes(32)), lambda: keys.unwrap_key(f"{KEY_URL}/{V1}", b"x" * 256)):
        with pytest.raises(expected) as caught:
            call()
        assert type(caught.value) is expected
        assert "body we never echo" not in caught.value.message
        assert caught.value.__cause__ is None
        if retry_after is not None:
            assert caught.value.retry_after == retry_after


def test_the_403_message_names_the_role() -> None:
    keys = KeyVaultKeys(credential=object(), client_factory=lambda k, c: RaisingClient(http_error(403)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Key Vault Crypto Service Encryption User"):
        keys.unwrap_key(f"{KEY_URL}/{V1}", b"x" * 256)


def test_unwrap_clients_are_bounded() -> None:
    made: list[str] = []

    class Echo:
        def unwrap_key(self, algorithm: Any, encrypted_key: bytes) -> Any:
            return SimpleNamespace(key=bytes(32))

    def factory(key_id: str, credential: Any) -> Any:
        made.append(key_id)
        return Echo()

    keys = KeyVaultKeys(credential=object(), client_factory=factory)  # type: ignore[arg-type]
    for n in range(40):
        keys.unwrap_key(f"{KEY_URL}/{n:032x}", b"w")
        keys.unwrap_key(f"{KEY_URL}/{n:032x}", b"w")
    assert len(made) == 40
    assert len(keys._unwrap_clients) <= 16
