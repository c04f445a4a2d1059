"""Validation and encoding of values used in Table Storage keys.

Pure: no storage access. Table keys may not contain `/ \\ # ?` or control characters; the store
also uses `|` as its separator inside composite keys, so ids may not contain it either.
Ids coming from outside are validated (a bad id is a 400); free text such as e-mail addresses
is percent-encoded instead. Ids made only of dots (`.`, `..`) are refused too: ids also become URL
path segments, and a dot segment would be removed by URL normalisation (`project: ".."` would
silently drop the segment before it).
"""

from __future__ import annotations

import re

from shared.core.errors import InvalidInput

MAX_ID_LENGTH = 128  # composite keys (`org|group`) stay well under the 1 KiB key limit
SEP = "|"
_FORBIDDEN = re.compile(r"[/\\#?|\x00-\x1f\x7f-\x9f]")
_ESCAPE = re.compile(r"[%/\\#?|\x00-\x1f\x7f-\x9f]")


def check_id(value: object, field: str) -> str:
    """Return `value` if it is usable as (part of) a table key, else raise InvalidInput naming `field`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_ID_LENGTH} characters", field=field)
    if not value.strip("."):
        raise InvalidInput(f"{field} must not consist only of dots (. and .. are not usable as ids)", field=field)
    if _FORBIDDEN.search(value):
        raise InvalidInput(
            f"{field} contains a character not allowed in an id (/ \\ # ? | or a control character)",
            field=field,
        )
    return value


def escape(text: str) -> str:
    """Percent-encode the characters a table key cannot hold (reversible, keeps sort order sane)."""
    return _ESCAPE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def join(*parts: str) -> str:
    return SEP.join(parts)
