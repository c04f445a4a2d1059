"""Schemathesis runs of the bundle's own OpenAPI document against a running devhost, bounded and repeatable.

`fuzz` draws a fixed number of cases per operation (a derandomized Hypothesis run, no shrinking, so
the run time is bounded and the same on every run), sends each with the management key, and hands
case and response to `inspect`, which returns the problems it finds. Nothing raises mid-run: every
problem of every operation is reported at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

Inspect = Callable[[Case, Response], list[str]]


@dataclass
class Run:
    """What a fuzz run sent (answers counted by operation and status) and the problems it found."""

    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        by_status = Counter(label.rsplit(" ", 1)[1] for label in self.statuses.elements())
        return f"{self.sent} requests, answers " + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items()))
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


def load(url: str) -> BaseSchema:
    """The document the bundle serves at `{url}/api/openapi.json`."""
    return schemathesis.openapi.from_url(f"{url}/api/openapi.json")


def operations(schema: BaseSchema) -> list[APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def conformance(case: Case, response: Response) -> list[str]:
    """No 500, and the answer is one the document describes (status, content type, body schema)."""
    problems = [f"500 Internal Server Error: {response.text[:200]}"] if response.status_code == 500 else []
    try:
        case.validate_response(response, checks=CONFORMANCE)
    except FailureGroup as group:
        problems += [f"{failure.title}: {failure.message}"[:600] for failure in group.exceptions]
    return problems


def fuzz(schema: BaseSchema, base_url: str, key: str, inspect: Inspect, *, max_examples: int,
         modes: Iterable[GenerationMode] = (GenerationMode.POSITIVE,),
         path_values: dict[str, list[str]] | None = None, skip: Callable[[APIOperation], bool] = lambda op: False
         ) -> Run:
    """Send up to `max_examples` cases per operation and mode; what was sent and the problems found.

    `path_values`: known ids per path parameter name; when given, half the cases of an operation use
    them (so requests reach stored records, not only 404s).
    """
    http = requests.Session()
    http.trust_env = False
    result = Run()
    for operation in operations(schema):
        if skip(operation):
            continue
        for mode in modes:
            strategy = _strategy(operation, mode, path_values)

            @settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case: Case) -> None:
                response = case.call(base_url=base_url, session=http, headers={"Authorization": f"Bearer {key}"},
                                     timeout=60)
                result.statuses[f"{case.operation.label} {response.status_code}"] += 1
                found = inspect(case, response)
                if found:
                    result.problems.append(f"{case.operation.label} [{mode.value}] {case.as_curl_command()}\n    "
                                    + "\n    ".join(found))

            run()
    return result


def _strategy(operation: APIOperation, mode: GenerationMode, path_values: dict[str, list[str]] | None
              ) -> st.SearchStrategy[Case]:
    plain = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    if not path_values or not names or any(name not in path_values for name in names):
        return plain
    known: dict[str, Any] = {name: path_values[name] for name in names}
    seeded = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in known.items()}).flatmap(
        lambda chosen: operation.as_strategy(generation_mode=mode, path_parameters=chosen))
    return st.one_of(seeded, plain)
