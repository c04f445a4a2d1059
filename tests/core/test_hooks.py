"""shared.core.hooks: the webhook URL a hook may deliver to, its create body, its status, and stray hooks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.core.errors import ConfigError
from shared.core.hooks import (
    BASIC_AUTH_USER,
    HEALTHY,
    STRAY_MIN_AGE,
    Observed,
    age,
    checked_webhook_url,
    hook_body,
    observed,
    strays,
)

URL = "https://bundle.example/api/vsts/issue-updated"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(URL, id="https"),
        pytest.param("https://10.0.0.5/api/vsts/issue-updated", id="https-private-ip"),
        pytest.param("https://bundle.example:8443/api/vsts/issue-updated?code=abc", id="https-port-and-query"),
        pytest.param("http://127.0.0.1:7071/api/vsts/issue-updated", id="http-ipv4-loopback"),
        pytest.param("http://[::1]:7071/api/vsts/issue-updated", id="http-ipv6-loopback"),
        pytest.param("http://localhost:7071/api/vsts/issue-updated", id="http-localhost"),
        pytest.param("http://LocalHost/api/vsts/issue-updated", id="http-localhost-any-case"),
        pytest.param("HTTPS://BUNDLE.EXAMPLE/api", id="scheme-any-case"),
    ],
)
def test_usable_webhook_urls_are_returned_unchanged(url: str) -> None:
    assert checked_webhook_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param(None, "not set", id="unset"),
        pytest.param("", "not set", id="empty"),
        pytest.param("http://bundle.example/api/vsts/issue-updated", "must use https", id="http-public-host"),
        pytest.param("http://10.0.0.5/api", "must use https", id="http-private-ip"),
        pytest.param("http://0.0.0.0/api", "must use https", id="http-any-address"),
        pytest.param("http://localhost.evil.example/api", "must use https", id="http-localhost-prefix"),
        pytest.param("http://127.0.0.1.nip.io/api", "must use https", id="http-loopback-lookalike-name"),
        pytest.param("http://localhost@evil.example/api", "user name or password", id="http-localhost-as-user-info"),
        pytest.param("http://[::ffff:127.0.0.1]/api", "must use https", id="http-ipv4-mapped-ipv6"),
        pytest.param("ftp://bundle.example/api", "must be an https:// URL", id="other-scheme"),
        pytest.param("bundle.example/api", "must be an https:// URL", id="no-scheme"),
        pytest.param("//bundle.example/api", "must be an https:// URL", id="scheme-relative"),
        pytest.param("https:///api", "has no host", id="no-host"),
        pytest.param("/api/vsts/issue-updated", "must be an https:// URL", id="path-only"),
        pytest.param("https://[::1/api", "not a valid URL", id="unclosed-ipv6-bracket"),
        pytest.param("https://[bundle.example]/api", "not a valid URL", id="bracketed-non-ip-host"),
    ],
)
def test_unusable_webhook_urls_are_config_errors(url: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        checked_webhook_url(url)
    assert "WEBHOOK_URL" in caught.value.message
    assert message in caught.value.message


def test_hook_body_delivers_every_workitem_update_with_the_secret_twice() -> None:
    assert hook_body(URL, "s3cret") == {
        "publisherId": "tfs",
        "eventType": "workitem.updated",
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "publisherInputs": {},
        "consumerInputs": {
            "url": URL,
            "basicAuthUsername": BASIC_AUTH_USER,
            "basicAuthPassword": "s3cret",
            "httpHeaders": "shared-secret:s3cret",
            "resourceDetailsToSend": "all",
            "messagesToSend": "none",
            "detailedMessagesToSend": "none",
        },
    }


def test_hook_body_for_another_event_type() -> None:
    assert hook_body(URL, "s", "workitem.commented")["eventType"] == "workitem.commented"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param({"status": "enabled", "consumerInputs": {"url": URL}}, Observed("enabled", URL), id="enabled"),
        pytest.param({"status": "disabledBySystem", "consumerInputs": {"url": URL}},
                     Observed("disabledBySystem", URL), id="disabled-by-system"),
        pytest.param({"status": "onProbation"}, Observed("onProbation", None), id="no-consumer-inputs"),
        pytest.param({"consumerInputs": {"url": URL}}, Observed(HEALTHY, URL), id="no-status-is-enabled"),
        pytest.param({"status": "", "consumerInputs": {"url": 5}}, Observed(HEALTHY, None), id="unusable-values"),
        pytest.param({"status": "enabled", "consumerInputs": "url"}, Observed("enabled", None),
                     id="consumer-inputs-not-an-object"),
    ],
)
def test_observed(answer: dict[str, Any], expected: Observed) -> None:
    assert observed(answer) == expected


NOW = 1_704_067_200.0  # 2024-01-01T00:00:00Z
OLD = "2023-12-31T00:00:00Z"
RECENT = "2023-12-31T23:59:00Z"  # one minute before NOW


def _sub(sub_id: Any, *, url: str = URL, created: str | None = OLD, **extra: Any) -> dict[str, Any]:
    sub: dict[str, Any] = {"id": sub_id, "eventType": "workitem.updated", "consumerInputs": {"url": url}, **extra}
    if created is not None:
        sub["createdDate"] = created
    return sub


@pytest.mark.parametrize(
    ("found", "keep", "expected"),
    [
        pytest.param([_sub("a"), _sub("b")], set(), ["a", "b"], id="old-hooks-to-our-url"),
        pytest.param([_sub("a"), _sub("b")], {"a"}, ["b"], id="kept-hook-spared"),
        pytest.param([_sub("a"), _sub("b")], {"a", "b", None}, [], id="all-kept"),
        pytest.param([_sub("a", created=RECENT)], set(), [], id="young-hook-may-be-a-create-in-progress"),
        pytest.param([_sub("a", created=None)], set(), ["a"], id="no-date-counts-as-old"),
        pytest.param([_sub("a", url="https://other.example/hook")], set(), [], id="other-url-spared"),
        pytest.param([_sub("a", eventType="workitem.created")], set(), [], id="other-event-spared"),
        pytest.param([{"id": "a", "consumerInputs": {"url": URL}, "createdDate": OLD}], set(), ["a"],
                     id="missing-event-type-counts-as-ours"),
        pytest.param([{"id": "a", "eventType": "workitem.updated", "createdDate": OLD}], set(), [],
                     id="no-consumer-inputs-spared"),
        pytest.param([_sub(7), "junk", None, _sub("b")], set(), ["b"], id="malformed-entries-skipped"),
    ],
)
def test_strays(found: list[Any], keep: set[str | None], expected: list[str]) -> None:
    assert strays(found, url=URL, keep=keep, now=NOW) == expected


def test_strays_of_another_event_type() -> None:
    found = [_sub("a"), _sub("b", eventType="workitem.commented")]
    assert strays(found, url=URL, keep=set(), now=NOW, event_type="workitem.commented") == ["b"]


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        pytest.param("2023-12-31T23:59:50Z", 10.0, id="utc-z"),
        pytest.param("2023-12-31T23:59:50", 10.0, id="naive-is-utc"),
        pytest.param("2024-01-01T00:59:50+01:00", 10.0, id="offset"),
        pytest.param("2023-12-31T23:59:49.5000000Z", 10.5, id="seven-fraction-digits-as-ado-sends"),
        pytest.param("2024-01-01T00:00:10Z", -10.0, id="clock-skew-future"),
    ],
)
def test_age(created: str, expected: float) -> None:
    assert age({"createdDate": created}, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "subscription",
    [
        pytest.param({}, id="missing"),
        pytest.param({"createdDate": None}, id="null"),
        pytest.param({"createdDate": ""}, id="empty"),
        pytest.param({"createdDate": "yesterday"}, id="not-a-date"),
        pytest.param({"createdDate": 1_700_000_000}, id="number"),
    ],
)
def test_unusable_date_is_very_old(subscription: dict[str, Any]) -> None:
    assert age(subscription, NOW) == float("inf")
    assert age(subscription, NOW) >= STRAY_MIN_AGE


def test_stray_age_boundary() -> None:
    exactly = NOW - STRAY_MIN_AGE
    created = datetime.fromtimestamp(exactly, UTC).isoformat()
    assert strays([_sub("a", created=created)], url=URL, keep=set(), now=NOW) == ["a"]
    assert strays([_sub("a", created=created)], url=URL, keep=set(), now=NOW - 1) == []
