"""The JSON form of an event (webhook body and feed entry) and the pull feed's opaque cursors.

`to_json` gives the exact bytes that are signed and sent; `from_json` is its inverse. Cursors name
the last feed entry a reader has seen as (partition key, row key), URL-safe and with one spelling.

Pure: no storage or network access.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from shared.core.errors import InvalidInput
from shared.core.events import Event, millis

PAYLOAD_KEYS: Final = ("id", "type", "created", "organization_id", "group_id", "data")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- JSON ---------------------------------------------------------------------------------------


def format_created(created: float) -> str:
    """ISO 8601 UTC with milliseconds and `Z`, e.g. 2024-05-01T12:30:00.250Z."""
    ms = millis(created)
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_created(text: Any) -> float:
    """Unix seconds (to the millisecond) from an ISO 8601 UTC timestamp; InvalidInput otherwise."""
    if not isinstance(text, str) or len(text) > 40 or not text.endswith(("Z", "+00:00")):
        raise InvalidInput("created must be an ISO 8601 UTC timestamp", field="created")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("created must be an ISO 8601 UTC timestamp", field="created") from None
    ms = ((moment - _EPOCH) // timedelta(microseconds=1) + 500) // 1000
    return millis(ms / 1000) / 1000


def to_payload(event: Event) -> dict[str, Any]:
    """The JSON object sent to the tracker: exactly id, type, created, organization_id, group_id, data."""
    return {
        "id": event.id,
        "type": event.type,
        "created": format_created(event.created),
        "organization_id": event.organization_id,
        "group_id": event.group_id,
        "data": event.data,
    }


def to_json(event: Event) -> str:
    """The payload as compact ASCII JSON, keys in a fixed order (these are the bytes that get signed)."""
    try:
        return json.dumps(to_payload(event), separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"data is not JSON-serialisable: {type(error).__name__}", field="data") from None


def from_payload(payload: Any) -> Event:
    """An Event from its JSON object; unknown top-level keys are ignored, anything invalid raises InvalidInput."""
    if not isinstance(payload, dict):
        raise InvalidInput("an event must be a JSON object")
    missing = [key for key in PAYLOAD_KEYS if key not in payload]
    if missing:
        raise InvalidInput(f"event lacks {', '.join(missing)}", field=missing[0])
    return Event(
        id=payload["id"],
        type=payload["type"],
        created=parse_created(payload["created"]),
        organization_id=payload["organization_id"],
        group_id=payload["group_id"],
        data=payload["data"],
    )


def from_json(text: str | bytes) -> Event:
    """The inverse of to_json; malformed JSON or an invalid event raises InvalidInput."""
    try:
        payload = json.loads(text)
    except (ValueError, TypeError):
        raise InvalidInput("event is not valid JSON") from None
    return from_payload(payload)


# --- pull feed cursors --------------------------------------------------------------------------

MAX_KEY_CHARS = 1024  # Azure Table keys are at most 1 KiB
MAX_CURSOR_CHARS = 4 * MAX_KEY_CHARS
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")
_BAD_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    if len(key) > MAX_KEY_CHARS:
        return "is too long"
    if _BAD_KEY_CHARS.search(key):
        return "holds a character Azure Table keys do not allow"
    return None


def encode_cursor(partition_key: str, row_key: str) -> str:
    """An opaque, URL-safe cursor naming the last entry a reader has seen."""
    for name, key in (("partition_key", partition_key), ("row_key", row_key)):
        problem = _key_problem(key)
        if problem:
            raise ValueError(f"{name} {problem}")
    raw = json.dumps([partition_key, row_key], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: Any) -> tuple[str, str]:
    """(partition_key, row_key) of a cursor made by encode_cursor; anything else raises InvalidInput(field="after")."""
    bad = InvalidInput("after is not a valid cursor", field="after")
    if not isinstance(text, str) or len(text) > MAX_CURSOR_CHARS or not _CURSOR.match(text):
        raise bad
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        keys = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(keys, list) or len(keys) != 2 or any(_key_problem(key) for key in keys):
        raise bad
    partition_key, row_key = keys
    if encode_cursor(partition_key, row_key) != text:  # one spelling per cursor
        raise bad
    return partition_key, row_key
