"""Service hooks in Azure DevOps: read one, create one with a fresh secret, delete, and clean up strays.

Only the SHA-256 of a hook's secret is kept; the secret itself goes to Azure DevOps and is then
forgotten. Decisions (what a status means, which hooks are strays) live in `shared.core.hooks`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from shared.adapters.ado_client import AdoClient
from shared.config import settings
from shared.core import hooks, secrets
from shared.core.errors import AdoError, AdoNotFound, BundleError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Created:
    """A subscription just created: its id, status and the hash of its secret (never the secret)."""

    id: str
    status: str
    secret_hash: str


def webhook_url() -> str:
    return hooks.checked_webhook_url(settings().webhook_url)


def observe(client: AdoClient, subscription_id: str | None) -> hooks.Observed:
    """The subscription's ADO status and URL; `MISSING` when there is none (no id, or a 404)."""
    if not subscription_id:
        return hooks.Observed(hooks.MISSING)
    try:
        return hooks.observed(client.get_subscription(subscription_id))
    except AdoNotFound:
        return hooks.Observed(hooks.MISSING)


def create(client: AdoClient, url: str, event_type: str = hooks.EVENT_UPDATED, *,
           secret: str | None = None) -> Created:
    """Create a hook for `event_type` with `secret` (default: a fresh one). Error messages are scrubbed of it."""
    secret = secret or secrets.new_secret()
    try:
        answer = client.create_subscription(hooks.hook_body(url, secret, event_type))
    except BundleError as error:
        if secret in error.message:
            error.message = error.message.replace(secret, "***")
            error.args = (error.message,)
        raise
    sub_id = answer.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise AdoError("Azure DevOps created a service hook but returned no id")
    status = hooks.observed(answer).status
    return Created(id=sub_id, status=status, secret_hash=secrets.hash_secret(secret))


def remove_strays(client: AdoClient, url: str, keep_id: str,
                  stored_id: Callable[[], str | Collection[str] | None], now: float,
                  event_type: str = hooks.EVENT_UPDATED) -> int:
    """Delete our other hooks to `url` (a timed-out create or a failed delete leaves one behind, and it
    would deliver every event twice), sparing `keep_id`, the hook or hooks stored right now
    (`stored_id()`, read just before deleting: the current one and retired ones still draining) and
    young hooks. Best effort; returns how many were deleted."""
    query = {"publisherId": "tfs", "eventType": event_type, "consumerId": "webHooks",
             "consumerActionId": "httpRequest"}
    try:
        found = client.query_subscriptions(query)
    except BundleError as error:
        log.warning("subscription.strays_not_listed", extra={"error": type(error).__name__})
        return 0
    candidates = hooks.strays(found, url=url, keep={keep_id}, now=now, event_type=event_type)
    if not candidates:
        return 0
    try:
        current = stored_id()
    except BundleError:
        return 0
    kept = {current} if current is None or isinstance(current, str) else set(current)
    doomed = [s for s in candidates if s not in kept]
    for stray in doomed:
        log.info("subscription.stray_deleted", extra={"subscription_id": stray})
        delete_quietly(client, stray)
    return len(doomed)


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
