"""Validation of API bodies: each helper returns a typed value or raises InvalidInput naming the field.

Pure: no I/O. Field errors are 422; a body that is not JSON at all is a 400 (see shared.adapters.http).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from shared.core.errors import InvalidInput

MAX_TEXT = 32_000
_MISSING = object()


class DuplicateKey(ValueError):
    """A JSON object names the same key twice (parsers disagree on which one wins)."""


def strict_json(text: str) -> Any:
    """`json.loads` that refuses duplicate object keys and the non-standard NaN/Infinity constants."""
    return json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constants)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(f"duplicate key {key[:64]!r}")
        found[key] = value
    return found


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def is_number(text: str) -> bool:
    """Whether `text` is a non-empty run of ASCII digits (`str.isdigit` also accepts "²" and "٣")."""
    return text.isascii() and text.isdigit()


def is_json_type(content_type: str | None) -> bool:
    """Whether a Content-Type header names JSON (`application/json`, parameters such as charset allowed)."""
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


def invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}", field=name, status=422)


def text(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = MAX_TEXT,
         allow_empty: bool = False) -> str | None:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise invalid(name, "is required")
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if not allow_empty and not value.strip():
        raise invalid(name, "must not be empty")
    if len(value) > max_len:
        raise invalid(name, f"must be at most {max_len} characters")
    return value


def required_text(body: dict[str, Any], name: str, *, max_len: int = MAX_TEXT) -> str:
    value = text(body, name, max_len=max_len)
    assert value is not None
    return value


def choice(body: dict[str, Any], name: str, options: Iterable[str], *, required: bool = True) -> str | None:
    options = tuple(options)
    value = text(body, name, required=required)
    if value is not None and value not in options:
        raise invalid(name, f"must be one of {', '.join(options)}")
    return value


def flag(body: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def text_list(body: dict[str, Any], name: str, *, required: bool = False, max_items: int = 200,
              max_len: int = 512) -> list[str]:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise invalid(name, "is required")
        return []
    if not isinstance(value, list) or len(value) > max_items:
        raise invalid(name, f"must be a list of at most {max_items} strings")
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > max_len:
            raise invalid(name, f"must contain non-empty strings of at most {max_len} characters")
    return list(value)


MAX_MAPPING_JSON = 16_000


def mapping(body: dict[str, Any], name: str, *, required: bool = False,
            max_json: int = MAX_MAPPING_JSON) -> dict[str, Any] | None:
    """An object field; stored as JSON, so its JSON form must fit a table property (32K characters)."""
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise invalid(name, "is required")
        return None
    if not isinstance(value, dict):
        raise invalid(name, "must be an object")
    if len(json.dumps(value)) > max_json:
        raise invalid(name, f"is larger than {max_json} characters of JSON")
    return value


def number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(name, "must be a number")
    return float(value)
