"""The plain answer every HTTP handler returns; the HTTP adapter turns it into a Functions response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """A plain HTTP answer: status, JSON-able body (None for an empty body), extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
