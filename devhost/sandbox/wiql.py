"""A small WIQL engine for the sandbox: flat `SELECT ... FROM WorkItems [WHERE ...] [ORDER BY ...]`.

Pure: parses the query and filters the org's work items. Supported: conditions joined by `AND`,
`[field] IN (...)` / `NOT IN`, comparisons (`= <> < <= > >=`) on ids, dates and strings, and the
`@project` macro, and `[System.Tags] CONTAINS '<tag>'`. Like ADO, a date literal with a time is
refused unless `timePrecision=true`, and without it dates compare by day. Anything else (OR,
parentheses, UNDER, other CONTAINS, EVER, ASOF, link queries) is answered 400, so a test never
silently gets a wrong answer.
https://learn.microsoft.com/rest/api/azure/devops/wit/wiql/query-by-wiql
https://learn.microsoft.com/azure/devops/boards/queries/wiql-syntax
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import FIELD_NAMES, WorkItem, field_display_name

MAX_RESULTS = 20000
_TOKEN = re.compile(
    r"\s*(?:(?P<field>\[[^\]]+\])|(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<op><>|<=|>=|=|<|>)|(?P<punct>[(),])|(?P<word>@?[A-Za-z_][A-Za-z0-9_.]*))",
)
_ALIASES = {
    **{name.lower(): ref for ref, name in FIELD_NAMES.items()},
    "id": "System.Id",
    "rev": "System.Rev",
    "changed date": "System.ChangedDate",
    "created date": "System.CreatedDate",
    "work item type": "System.WorkItemType",
    "team project": "System.TeamProject",
    "changed by": "System.ChangedBy",
    "created by": "System.CreatedBy",
}
INTEGER_FIELDS = ("System.Id", "System.Rev", "System.CommentCount", "Microsoft.VSTS.Common.Priority")
DATE_FIELDS = ("System.ChangedDate", "System.CreatedDate", "Microsoft.VSTS.Common.StateChangeDate")
STRING_FIELDS = (
    "System.TeamProject",
    "System.WorkItemType",
    "System.State",
    "System.Reason",
    "System.Title",
    "System.AreaPath",
    "System.IterationPath",
    "System.AssignedTo",
    "System.ChangedBy",
    "System.CreatedBy",
    "System.Tags",
)
KNOWN_FIELDS = (*INTEGER_FIELDS, *DATE_FIELDS, *STRING_FIELDS, "System.Description", "System.History")


@dataclass
class Query:
    columns: list[str]
    conditions: list[Callable[[WorkItem], bool]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)


def unsupported(text: str) -> ApiError:
    return ApiError(
        400,
        f"TF51006: The sandbox does not support this query construct. The error is caused by «{text}».",
        "SyntaxException",
        type_name="Microsoft.TeamFoundation.WorkItemTracking.Client.Wiql.SyntaxException, "
        "Microsoft.TeamFoundation.WorkItemTracking.Client",
    )


def parse(text: str, *, project: str | None, time_precision: bool) -> Query:
    """Parse a flat WIQL query; raises ADO-shaped 400s for unknown fields or unsupported syntax."""
    tokens = _tokenize(text)
    pos = 0

    def peek(offset: int = 0) -> tuple[str, str] | None:
        return tokens[pos + offset] if pos + offset < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise unsupported(text[-40:] or text)
        pos += 1
        return tokens[pos - 1]

    def word(expected: str) -> None:
        kind, value = take()
        if kind != "word" or value.lower() != expected:
            raise unsupported(value)

    word("select")
    columns = [_field(take())]
    while peek() == ("punct", ","):
        take()
        columns.append(_field(take()))
    word("from")
    source = take()
    if source[0] != "word" or source[1].lower() != "workitems":
        raise unsupported(source[1])
    query = Query(columns=columns)
    if peek() and peek()[1].lower() == "where":  # type: ignore[index]
        take()
        query.conditions.append(_condition(take, peek, text, project=project, time_precision=time_precision))
        while peek() and peek()[1].lower() == "and":  # type: ignore[index]
            take()
            query.conditions.append(_condition(take, peek, text, project=project, time_precision=time_precision))
    if peek() and peek()[1].lower() == "order":  # type: ignore[index]
        take()
        word("by")
        while True:
            name = _field(take())
            descending = False
            if peek() and peek()[1].lower() in ("asc", "desc"):  # type: ignore[index]
                descending = take()[1].lower() == "desc"
            query.order.append((name, descending))
            if peek() != ("punct", ","):
                break
            take()
    if peek() is not None:
        raise unsupported(peek()[1])  # type: ignore[index]
    return query


def run(query: Query, items: list[WorkItem]) -> list[WorkItem]:
    """Matching items, ordered by the ORDER BY columns, then by id (ADO's default order)."""
    found = [item for item in items if all(cond(item) for cond in query.conditions)]
    found.sort(key=lambda i: i.id)
    for name, descending in reversed(query.order):
        found.sort(key=lambda i, n=name: _sort_key(value_of(i, n)), reverse=descending)
    return found


def column(base: str, name: str) -> dict[str, str]:
    return {"referenceName": name, "name": _display(name), "url": f"{base}_apis/wit/fields/{name}"}


def value_of(item: WorkItem, name: str) -> Any:
    if name == "System.Id":
        return item.id
    if name == "System.Rev":
        return item.rev
    return item.fields.get(name)


# -- parsing helpers ------------------------------------------------------------------------------


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise unsupported(text[pos : pos + 20])
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _field(token: tuple[str, str]) -> str:
    kind, value = token
    if kind not in ("field", "word") or value.startswith("@"):
        raise unsupported(value)
    name = value.strip("[]").strip()
    resolved = _ALIASES.get(name.lower()) or next((f for f in KNOWN_FIELDS if f.lower() == name.lower()), None)
    if resolved is None:
        raise ApiError(
            400,
            f"TF51005: The query references a field that does not exist. The error is caused by «{value}».",
            "QueryException",
        )
    return resolved


def _condition(
    take: Callable[[], tuple[str, str]],
    peek: Callable[[], tuple[str, str] | None],
    text: str,
    *,
    project: str | None,
    time_precision: bool,
) -> Callable[[WorkItem], bool]:
    name = _field(take())
    kind, op = take()
    negate = False
    if kind == "word" and op.lower() == "not":
        negate, (kind, op) = True, take()
        if op.lower() != "in":
            raise unsupported(op)
    if kind == "word" and op.lower() == "contains" and not negate:
        if name != "System.Tags":
            raise unsupported(op)
        tag = str(_literal(take(), name, text, project=project, time_precision=time_precision)).strip().lower()
        # On tags, CONTAINS matches a whole tag (tags are kept as "a; b; c").
        return lambda item: tag in {t.strip().lower() for t in str(value_of(item, name) or "").split(";")}
    if kind == "word" and op.lower() == "in":
        if take() != ("punct", "("):
            raise unsupported(op)
        values = [_literal(take(), name, text, project=project, time_precision=time_precision)]
        while peek() == ("punct", ","):
            take()
            values.append(_literal(take(), name, text, project=project, time_precision=time_precision))
        if take() != ("punct", ")"):
            raise unsupported(op)
        wanted = [_normal(name, v, time_precision) for v in values]
        return lambda item: (_normal(name, value_of(item, name), time_precision) in wanted) != negate
    if kind != "op":
        raise unsupported(op)
    literal = _literal(take(), name, text, project=project, time_precision=time_precision)
    if name not in INTEGER_FIELDS + DATE_FIELDS and op not in ("=", "<>"):
        raise unsupported(op)
    right = _normal(name, literal, time_precision)
    compare = _COMPARE[op]

    def check(item: WorkItem) -> bool:
        left = _normal(name, value_of(item, name), time_precision)
        return left is not None and compare(left, right)

    return check


def _literal(token: tuple[str, str], name: str, text: str, *, project: str | None, time_precision: bool) -> Any:
    kind, value = token
    if kind == "word" and value.lower() == "@project":
        if project is None:
            raise ApiError(400, "TF51011: The @project macro requires a project in the request URL.", "QueryException")
        return project
    if kind == "number" and name in INTEGER_FIELDS:
        return int(float(value))
    if kind == "string":
        literal = value[1:-1].replace("''", "'")
        if name in INTEGER_FIELDS:
            if not literal.strip().lstrip("-").isdigit():
                raise unsupported(value)
            return int(literal)
        if name in DATE_FIELDS:
            if not time_precision and ("T" in literal.upper() or ":" in literal):
                raise ApiError(
                    400,
                    "You cannot supply a time with the date when running a query using date precision. "
                    f"The error is caused by «[{name}] {value}».",
                    "QueryException",
                )
            return _parse_date(literal, value)
        return literal
    raise unsupported(value)


def _parse_date(literal: str, raw: str) -> datetime:
    text = literal.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(400, f"TF51019: The value {raw} is not a valid date.", "QueryException") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _normal(name: str, value: Any, time_precision: bool) -> Any:
    """The comparable form of a value: ints, UTC datetimes (or dates by day), lower-cased strings."""
    if value is None:
        return None
    if name in DATE_FIELDS:
        moment = value if isinstance(value, datetime) else _parse_date(str(value), str(value))
        return moment if time_precision else moment.date()
    if name in INTEGER_FIELDS:
        return int(value)
    return str(value).lower()


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value if isinstance(value, int | float) else str(value).lower())


def _display(name: str) -> str:
    return {"System.Id": "ID", "System.ChangedDate": "Changed Date", "System.CreatedDate": "Created Date"}.get(
        name, field_display_name(name)
    )


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
