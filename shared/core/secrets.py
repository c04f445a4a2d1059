"""Service-hook shared secrets: generation, hashing for storage, constant-time comparison.

Pure: no I/O. Only the SHA-256 of a secret is stored; the secret itself lives in ADO's subscription.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret() -> str:
    """32 random bytes as 64 lowercase hex characters (the format Sentry uses)."""
    return secrets.token_hex(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches(candidate: str | None, stored_hash: str | None) -> bool:
    """True only when both are present and the candidate hashes to the stored hash."""
    if not candidate or not stored_hash:
        # Still spend the comparison, so a missing credential is not faster to reject.
        hmac.compare_digest(hash_secret(candidate or "-"), "0" * 64)
        return False
    return hmac.compare_digest(hash_secret(candidate), stored_hash)
