"""Management API handlers of tracker events: the pull feed, deliveries and replay, and the
organization's webhook endpoint.

    GET  /manage/organizations/{org_id}/events?after=<cursor>&limit=<1-500>
         → {"events": [<payload>, ...], "next": <cursor>}
    GET  /manage/organizations/{org_id}/deliveries?status=<queued|retrying|failed|delivered>&after=&limit=
         → {"deliveries": [<delivery>, ...], "next": <cursor or null>}
    POST /manage/organizations/{org_id}/deliveries/{event_id}/replay → 202 {"delivery": <delivery>}
    PUT  /manage/organizations/{org_id}/config {"tracker_webhook_url", "tracker_webhook_secret"?}
    GET  /manage/organizations/{org_id}/config
         → {"organization_id", "tracker_webhook_url", "tracker_webhook_secret_set", "delivery", "endpoint_gone"}

Cursors are opaque (`shared.core.event_json.encode_cursor` of the organization and a row key) and
never expire: a feed cursor is a position in the organization's numbered feed. The secret is never
returned. Every input is checked before anything is read or written.
"""

from __future__ import annotations

from typing import Any

from shared.adapters import tracker_webhook
from shared.adapters.feed import FEED
from shared.compose import Services
from shared.config import settings
from shared.core import delivery, event_json, validate
from shared.core.errors import ConfigError, Conflict, InvalidInput, NotFound
from shared.core.keys import SEP, check_id
from shared.core.reply import Reply
from shared.flows import relay

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_URL = 2048
CONFIG_KEYS = ("tracker_webhook_url", "tracker_webhook_secret")


def _limit(query: dict[str, str]) -> int:
    text = query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    return int(text)


def _after(org_id: str, query: dict[str, str], prefix: str) -> str | None:
    """The row key a cursor names, if it is one of this organization's cursors of this kind."""
    text = query.get("after")
    if text is None or text == "":
        return None
    partition, row_key = event_json.decode_cursor(text)
    if partition != org_id or not row_key.startswith(prefix):
        raise InvalidInput("after is not a valid cursor", field="after")
    return row_key


def events(svc: Services, org_id: str, query: dict[str, str]) -> Reply:
    """A page of the organization's feed, oldest first."""
    check_id(org_id, "org_id")
    limit = _limit(query)
    after = _after(org_id, query, FEED + SEP)
    page = svc.store.feed.page(org_id, after, limit)
    cursor = event_json.encode_cursor(org_id, page[-1][0]) if page else query.get("after") or None
    return Reply(body={"events": [event_json.to_payload(event) for _, event in page], "next": cursor})


def deliveries(svc: Services, org_id: str, query: dict[str, str]) -> Reply:
    """The organization's deliveries that did not succeed at once, oldest event first."""
    check_id(org_id, "org_id")
    limit = _limit(query)
    status = query.get("status") or None
    if status is not None and status not in delivery.STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(delivery.STATUSES)}", field="status")
    after = _after(org_id, query, "evt_")
    found = svc.store.deliveries.page(org_id, status, after, limit)
    cursor = event_json.encode_cursor(org_id, found[-1].event_id) if len(found) == limit else None
    return Reply(body={"deliveries": [item.view() for item in found], "next": cursor})


def replay(svc: Services, org_id: str, event_id: str) -> Reply:
    """Deliver an event of the organization's feed again, at once and with a fresh retry schedule."""
    check_id(org_id, "org_id")
    check_id(event_id, "id")
    event = svc.store.feed.find(org_id, event_id)
    if event is None:
        raise NotFound("Delivery not found")
    config = svc.store.feed.head(org_id).config
    target = relay.endpoint(svc, org_id, config)
    if target is None:
        if config.gone is not None:
            raise Conflict("The endpoint answered 410 Gone; configure it again to resume delivery")
        raise Conflict("No webhook endpoint is configured for this organization")
    record = relay.replay(svc, event)
    return Reply(status=202, body={"delivery": record.view()})


def put_config(svc: Services, org_id: str, body: dict[str, Any]) -> Reply:
    """Set (or with a null URL, remove) the organization's own webhook endpoint."""
    check_id(org_id, "org_id")
    unknown = sorted(set(body) - set(CONFIG_KEYS))
    if unknown:
        raise validate.invalid(unknown[0][:64], "is not a setting of the organization")
    if "tracker_webhook_url" not in body:
        raise validate.invalid("tracker_webhook_url", "is required (null to use the app settings)")
    url = validate.text(body, "tracker_webhook_url", required=False, max_len=MAX_URL)
    has_secret = body.get("tracker_webhook_secret") is not None
    secret = validate.text(body, "tracker_webhook_secret", required=False, max_len=200)
    if url is None:
        if has_secret:
            raise validate.invalid("tracker_webhook_secret", "needs a tracker_webhook_url")
    else:
        _checked(tracker_webhook.check_url, url, "tracker_webhook_url")
        if secret is not None:
            _checked(tracker_webhook.check_secret, secret, "tracker_webhook_secret")
        elif svc.store.feed.config(org_id).sealed_secret is None:
            raise validate.invalid("tracker_webhook_secret", "is required with a new tracker_webhook_url")
    svc.store.feed.put_config(org_id, url, secret if url is not None else None,
                              keep_secret=url is not None and secret is None)
    return get_config(svc, org_id)


def _checked(check: Any, value: str, name: str) -> None:
    try:
        check(value, setting=name)
    except ConfigError as error:
        raise InvalidInput(error.message, field=name, status=422) from None


def get_config(svc: Services, org_id: str) -> Reply:
    """The organization's webhook endpoint (never its secret) and where its events go."""
    check_id(org_id, "org_id")
    config = svc.store.feed.config(org_id)
    current = config.url or settings().tracker_webhook_url
    source = "organization" if config.url else "settings" if current else "none"
    gone = current is not None and config.gone == relay.fingerprint(current)
    return Reply(body={"organization_id": org_id, "tracker_webhook_url": config.url,
                       "tracker_webhook_secret_set": config.sealed_secret is not None, "delivery": source,
                       "endpoint_gone": gone})
