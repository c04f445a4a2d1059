"""Send one event to the tracker as a signed webhook, and say what should happen next.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com/): a POST of the event's JSON
with `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (unix seconds of this
attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`, made by the `standardwebhooks` package).
How each answer is treated follows the spec's "Delivery success and failure" section:
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

    2xx                       delivered
    410 Gone                  gone: stop delivering to this endpoint
    400, 413, 415, 422        failed: the receiver refuses this payload, and a retry sends the same bytes
    anything else, no answer  retry (Retry-After honoured, 1 s - 1 h)

The spec retries every failure; only answers that refuse the payload itself stop early. 3xx, 401,
403 and 404 are retried: they usually mean the endpoint or its secret is being (re)configured, and
the retry schedule leaves a day to fix that.

Redirects are not followed. Neither the secret nor the signature is ever logged, and failure reasons
never carry exception text (which can hold the URL and its query string).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

import requests
from standardwebhooks import Webhook

from shared.core.backoff import parse_retry_after
from shared.core.errors import ConfigError, clamp_retry_after
from shared.core.event_json import to_json
from shared.core.events import Event

log = logging.getLogger(__name__)

SECRET_SETTING = "TRACKER_WEBHOOK_SECRET"
URL_SETTING = "TRACKER_WEBHOOK_URL"
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # Standard Webhooks: 24 to 64 random bytes
MAX_SECRET_BYTES = 64
DEFAULT_TIMEOUT = 15.0  # the spec recommends 15-30 s
REFUSED_STATUSES = frozenset({400, 413, 415, 422})  # the payload itself is refused
USER_AGENT = "ado-boards-sync-webhooks/1"

_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

Kind = Literal["delivered", "retry", "gone", "failed"]


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to.

    `kind`: delivered; retry (later, per the schedule; `retry_after` is the receiver's hint in
    seconds, when it gave one); gone (410: stop delivering to this endpoint); failed (permanent).
    `status` is the HTTP status (None when no answer came), `reason` a short text safe to store
    and show.
    """

    kind: Kind
    status: int | None
    reason: str
    retry_after: float | None = None


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def check_secret(secret: str | None, *, setting: str = SECRET_SETTING) -> str:
    """The secret, if it is `whsec_` + base64 of 24-64 bytes; ConfigError naming `setting` otherwise.

    The message never repeats the value.
    """
    problem = f"{setting} must be {SECRET_PREFIX} followed by the base64 of {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes"
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ConfigError(problem)
    encoded = secret[len(SECRET_PREFIX):]
    if not _BASE64.match(encoded):
        raise ConfigError(problem)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(problem) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ConfigError(problem)
    return secret


def check_url(url: str | None, *, setting: str = URL_SETTING) -> str:
    """The URL, if it is https (or http to a loopback host); ConfigError naming `setting` otherwise.

    The message never repeats the URL (its query string may hold a token).
    """
    if not isinstance(url, str) or not url or url != url.strip():
        raise ConfigError(f"{setting} must be an absolute https URL")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(f"{setting} is not a valid URL") from None
    if not host:
        raise ConfigError(f"{setting} must be an absolute https URL")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host)):
        return url
    raise ConfigError(f"{setting} must be an https URL (http is allowed only for localhost)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(secret: str, event: Event, *, now: float) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt at `now` (unix seconds)."""
    body = to_json(event)
    timestamp = int(now)
    signature = Webhook(check_secret(secret)).sign(
        msg_id=event.id, timestamp=datetime.fromtimestamp(timestamp, tz=UTC), data=body
    )
    headers = {
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    return body.encode("ascii"), headers


def classify(status: int, retry_after_header: str | None = None, *, now: float) -> Outcome:
    """The outcome of an answer with HTTP `status` (and its Retry-After header, if any)."""
    reason = f"HTTP {status}"
    if 200 <= status < 300:
        return Outcome("delivered", status, reason)
    if status == 410:
        return Outcome("gone", status, "HTTP 410: the endpoint asks for no more deliveries")
    if status in REFUSED_STATUSES:
        return Outcome("failed", status, reason)
    retry_after = clamp_retry_after(parse_retry_after(retry_after_header, now=now))
    return Outcome("retry", status, reason, retry_after)


def deliver(
    url: str,
    secret: str,
    event: Event,
    *,
    session: requests.Session,
    timeout: float = DEFAULT_TIMEOUT,
    now: Callable[[], float] = time.time,
) -> Outcome:
    """POST `event` to `url`, signed with `secret`; ConfigError if either is malformed."""
    check_url(url)
    body, headers = sign(secret, event, now=now())
    try:
        response = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True)
    except requests.Timeout:
        outcome = Outcome("retry", None, "timed out")
    except requests.exceptions.SSLError:
        outcome = Outcome("retry", None, "TLS handshake failed")
    except requests.ConnectionError:
        outcome = Outcome("retry", None, "connection failed")
    except requests.RequestException:
        outcome = Outcome("retry", None, "request failed")
    else:
        with response:
            outcome = classify(response.status_code, response.headers.get("Retry-After"), now=now())
    log.info(
        "tracker_webhook.attempt",
        extra={"event_id": event.id, "event_type": event.type, "outcome": outcome.kind, "http_status": outcome.status},
    )
    return outcome
