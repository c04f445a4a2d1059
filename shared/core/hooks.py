"""Service hooks, decided without I/O: the create body, what a subscription's status means, strays.

Each integration has one organization-wide `workitem.updated` hook delivering to `WEBHOOK_URL` with
a fresh shared secret (basic-auth password and `shared-secret` header). Subscription statuses:
https://learn.microsoft.com/azure/devops/service-hooks/troubleshoot
Create body: https://learn.microsoft.com/rest/api/azure/devops/hooks/subscriptions/create
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.core.errors import ConfigError
from shared.core.hosts import webhook_url_problem

HEALTHY = "enabled"
MISSING = "missing"
# Statuses a new subscription fixes; `disabledByUser` is a person's decision and is left alone.
REPLACEABLE = frozenset({"onProbation", "disabledBySystem", "disabledByInactiveIdentity"})
STRAY_MIN_AGE = 300.0  # seconds
BASIC_AUTH_USER = "ado-sync"
EVENT_UPDATED = "workitem.updated"


def checked_webhook_url(url: str | None) -> str:
    """`WEBHOOK_URL` if usable: https, or http on loopback only (a plain-http hook sends its secret in clear)."""
    if not url:
        raise ConfigError(
            "WEBHOOK_URL is not set: the service hook needs the public URL of this app's webhook route "
            "(https://<app>/api/vsts/issue-updated). Set WEBHOOK_URL and retry."
        )
    problem = webhook_url_problem(url)
    if problem:
        raise ConfigError(f"WEBHOOK_URL is not usable: {problem}.")
    return url


def hook_body(url: str, secret: str, event_type: str = EVENT_UPDATED) -> dict[str, Any]:
    """The create body of an organization-wide hook (no publisher inputs)."""
    return {
        "publisherId": "tfs",
        "eventType": event_type,
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


def observed(answer: dict[str, Any]) -> Observed:
    """The status and URL of a subscription as Azure DevOps described it."""
    value = answer.get("status")
    inputs = answer.get("consumerInputs")
    url = inputs.get("url") if isinstance(inputs, dict) else None
    return Observed(value if isinstance(value, str) and value else HEALTHY, url if isinstance(url, str) else None)


def strays(found: list[Any], *, url: str, keep: set[str | None], now: float,
           event_type: str = EVENT_UPDATED) -> list[str]:
    """Ids of our other hooks (same event, same URL) old enough to be nobody's create in progress."""
    ids = []
    for sub in found:
        if not isinstance(sub, dict) or not isinstance(sub.get("id"), str) or sub["id"] in keep:
            continue
        inputs = sub.get("consumerInputs")
        if sub.get("eventType", event_type) != event_type or not isinstance(inputs, dict):
            continue
        if inputs.get("url") == url and age(sub, now) >= STRAY_MIN_AGE:
            ids.append(sub["id"])
    return ids


def age(subscription: dict[str, Any], now: float) -> float:
    """Seconds since the hook was created (very old when ADO gives no usable date)."""
    created = subscription.get("createdDate")
    try:
        stamp = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return now - stamp.timestamp()


def delivering_to(found: list[Any], url: str) -> list[str]:
    """Ids of every hook in `found` that delivers to `url`, whatever its event type or age."""
    ids = []
    for sub in found:
        inputs = sub.get("consumerInputs") if isinstance(sub, dict) else None
        if isinstance(inputs, dict) and inputs.get("url") == url and isinstance(sub.get("id"), str):
            ids.append(sub["id"])
    return ids
