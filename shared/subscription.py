"""The `workitem.updated` service hook: its create body, its health, and creating/replacing it.

Each integration has one organization-wide hook that delivers to `WEBHOOK_URL` with a fresh shared
secret (as basic-auth password and `shared-secret` header). Only the secret's SHA-256 is stored;
the secret itself goes to ADO and is then forgotten. Does network I/O through an `AdoClient`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from shared import secrets
from shared.ado_client import AdoClient
from shared.config import settings
from shared.core.errors import AdoError, AdoNotFound, BundleError, ConfigError

log = logging.getLogger(__name__)

HEALTHY = "enabled"
STRAY_MIN_AGE = 300.0  # seconds
# Statuses a new subscription fixes (ado-api.md §1.3); `disabledByUser` is a person's decision.
REPLACEABLE = frozenset({"onProbation", "disabledBySystem", "disabledByInactiveIdentity"})
MISSING = "missing"
BASIC_AUTH_USER = "ado-sync"


@dataclass(frozen=True)
class Created:
    """A subscription just created: its id, status and the hash of its secret (never the secret)."""

    id: str
    status: str
    secret_hash: str


def webhook_url() -> str:
    """`WEBHOOK_URL`, checked to be an absolute http(s) URL (ADO refuses anything else)."""
    url = settings().webhook_url
    if not url:
        raise ConfigError(
            "WEBHOOK_URL is not set: the service hook needs the public URL of this app's webhook route "
            "(https://<app>/api/vsts/issue-updated). Set WEBHOOK_URL and retry."
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("WEBHOOK_URL must be an absolute https URL of this app's webhook route.")
    return url


def hook_body(url: str, secret: str) -> dict[str, Any]:
    """The create body (reference/sentry-vsts.md §7.1, ado-api.md §1.2); org-wide: no publisher inputs."""
    return {
        "publisherId": "tfs",
        "eventType": "workitem.updated",
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "publisherInputs": {},
        "consumerInputs": {
            "url": url,
            "basicAuthUsername": BASIC_AUTH_USER,
            "basicAuthPassword": secret,
            "httpHeaders": f"shared-secret:{secret}",
            "resourceDetailsToSend": "all",
            "messagesToSend": "none",
            "detailedMessagesToSend": "none",
        },
    }


@dataclass(frozen=True)
class Observed:
    """What ADO says about a subscription: its status (`MISSING` when gone) and delivery URL."""

    status: str
    url: str | None = None


def observe(client: AdoClient, subscription_id: str | None) -> Observed:
    """The subscription's ADO status and URL; `MISSING` when there is none (no id, or a 404)."""
    if not subscription_id:
        return Observed(MISSING)
    try:
        found = client.get_subscription(subscription_id)
    except AdoNotFound:
        return Observed(MISSING)
    value = found.get("status")
    inputs = found.get("consumerInputs")
    url = inputs.get("url") if isinstance(inputs, dict) else None
    return Observed(value if isinstance(value, str) and value else HEALTHY, url if isinstance(url, str) else None)


def create(client: AdoClient, url: str) -> Created:
    """Create a hook with a fresh secret. ADO's error messages are scrubbed of the secret."""
    secret = secrets.new_secret()
    try:
        answer = client.create_subscription(hook_body(url, secret))
    except BundleError as error:
        if secret in error.message:
            error.message = error.message.replace(secret, "***")
            error.args = (error.message,)
        raise
    sub_id = answer.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise AdoError("Azure DevOps created a service hook but returned no id")
    found = answer.get("status")
    return Created(id=sub_id, status=found if isinstance(found, str) and found else HEALTHY,
                   secret_hash=secrets.hash_secret(secret))


def remove_strays(client: AdoClient, url: str, keep_id: str, stored_id: Callable[[], str | None]) -> int:
    """Delete our other hooks in the organization (same event, same URL), keeping `keep_id`.

    A create that timed out may still have created a hook, and a failed delete leaves the old one
    behind: either would deliver every event twice. Never deleted: the hook stored right now
    (`stored_id()`, read just before deleting, since a concurrent install may have stored another)
    and hooks younger than `STRAY_MIN_AGE` (another request's create may still be finishing).
    Best effort; returns how many were deleted.
    """
    query = {"publisherId": "tfs", "eventType": "workitem.updated", "consumerId": "webHooks",
             "consumerActionId": "httpRequest"}
    try:
        found = client.query_subscriptions(query)
    except BundleError as error:
        log.warning("subscription.strays_not_listed", extra={"error": type(error).__name__})
        return 0
    now = time.time()
    strays = [s.get("id") for s in found
              if isinstance(s, dict) and s.get("id") != keep_id and _age(s, now) >= STRAY_MIN_AGE
              and isinstance(s.get("consumerInputs"), dict) and s["consumerInputs"].get("url") == url]
    if not strays:
        return 0
    try:
        current = stored_id()
    except BundleError:
        return 0
    strays = [s for s in strays if s != current]
    for stray in strays:
        log.info("subscription.stray_deleted", extra={"subscription_id": stray})
        delete_quietly(client, stray if isinstance(stray, str) else None)
    return len(strays)


def _age(subscription: dict[str, Any], now: float) -> float:
    """Seconds since the hook was created (very old when ADO gives no usable date)."""
    created = subscription.get("createdDate")
    try:
        stamp = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return now - stamp.timestamp()


def delete_quietly(client: AdoClient, subscription_id: str | None) -> None:
    """Delete a subscription we no longer use; failures are logged and ignored (best effort)."""
    if not subscription_id:
        return
    try:
        client.delete_subscription(subscription_id)
    except AdoNotFound:
        pass
    except BundleError as error:
        log.warning("subscription.delete_failed", extra={"subscription_id": subscription_id,
                                                          "error": type(error).__name__})
