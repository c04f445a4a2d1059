"""Invocation context on log records, and when Application Insights export is switched on."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared import telemetry


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_configured", False)


def test_records_inside_an_invocation_carry_its_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("shared.example")
    with telemetry.invocation("inv-123"):
        logger.info("example.inside")
    logger.info("example.outside")
    inside, outside = caplog.records[-2:]
    assert inside.invocation_id == "inv-123"
    assert not hasattr(outside, "invocation_id")


def test_export_is_configured_once_when_the_connection_string_is_set() -> None:
    calls: list[dict[str, Any]] = []
    environ = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=abc"}
    assert telemetry.ensure_configured(environ, lambda **kw: calls.append(kw))
    assert telemetry.ensure_configured(environ, lambda **kw: calls.append(kw))
    assert calls == [{"connection_string": "InstrumentationKey=abc"}]


@pytest.mark.parametrize("environ", [
    {},
    {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=abc",
     "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"},
])
def test_export_stays_off_without_a_connection_string_or_when_the_worker_exports(environ: dict) -> None:
    calls: list[dict[str, Any]] = []
    assert not telemetry.ensure_configured(environ, lambda **kw: calls.append(kw))
    assert calls == []


def test_a_failing_exporter_does_not_break_the_app() -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("no network")

    assert not telemetry.ensure_configured({"APPLICATIONINSIGHTS_CONNECTION_STRING": "x"}, broken)


def test_the_exporter_package_is_installed() -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    assert callable(configure_azure_monitor)
