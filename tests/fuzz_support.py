"""Schemathesis runs of the bundle's own OpenAPI document against a running devhost, bounded and repeatable.

`fuzz` draws a fixed number of cases per operation (a derandomized Hypothesis run, no shrinking, so
the run time is bounded and the same on every run) and hands each to a `PerCase` function, which
sends it and returns the problems it finds. Nothing raises mid-run: every problem of every
operation is reported at the end.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]

@dataclass
class Run:
    """One fuzz run: its HTTP session, the answers it got (by operation and status) and the problems found."""

    base_url: str
    http: requests.Session = field(default_factory=requests.Session)
    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http.trust_env = False

    def send(self, case: Case, key: str | None) -> Response:
        """Send `case` with the management key `key` (None: no Authorization header)."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        response = case.call(base_url=self.base_url, session=self.http, headers=headers, timeout=60)
        self.statuses[f"{case.operation.label} {response.status_code}"] += 1
        return response

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        by_status = Counter(label.rsplit(" ", 1)[1] for label in self.statuses.elements())
        return f"{self.sent} requests, answers " + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items()))


# What to do with one case: send it (with `Run.send`) and return the problems found.
PerCase = Callable[[Run, Case], list[str]]


def with_key(key: str, inspect: Callable[[Case, Response], list[str]]) -> PerCase:
    """Send each case with the management key, then `inspect` the answer."""
    return lambda run, case: inspect(case, run.send(case, key))


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


def fuzz(schema: BaseSchema, base_url: str, per_case: PerCase, *, max_examples: int,
         modes: Iterable[GenerationMode] = (GenerationMode.POSITIVE,),
         path_values: dict[str, list[str]] | None = None, skip: Callable[[APIOperation], bool] = lambda op: False
         ) -> Run:
    """Run up to `max_examples` cases per operation and mode through `per_case`.

    `path_values`: known ids per path parameter name; when given, half the cases of an operation use
    them (so requests reach stored records, not only 404s).
    """
    run = Run(base_url)
    for operation in operations(schema):
        if not skip(operation):
            for mode in modes:
                _fuzz_one(run, _strategy(operation, mode, path_values), per_case, max_examples, mode)
    return run


def _fuzz_one(run: Run, strategy: st.SearchStrategy[Case], per_case: PerCase, max_examples: int,
              mode: GenerationMode) -> None:
    @settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def each(case: Case) -> None:
        found = per_case(run, case)
        if found:
            run.problems.append(f"{case.operation.label} [{mode.value}] {case.as_curl_command()}\n    "
                                + "\n    ".join(found))

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid: no parameters or body, negative mode
        each()


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
