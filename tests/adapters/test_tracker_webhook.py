"""Signed delivery of one event to the tracker: headers, signatures a receiver accepts, outcomes."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest
import requests
import responses
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.adapters import tracker_webhook
from shared.adapters.tracker_webhook import deliver
from shared.core import event_json, events
from shared.core.errors import ConfigError

URL = "https://tracker.example.com/hooks/ado?token=abc"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
EVENT = events.status_changed("org-1", "grp-1", "unresolved", "resolved", source="azure_devops",
                              integration_id="acct-1", work_item="42", rev=5)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        mock.add_passthru("http://127.0.0.1")  # storage calls of a bundle running in the background
        yield mock


def sent(mock: responses.RequestsMock, index: int = -1) -> tuple[bytes, dict[str, str]]:
    request = mock.calls[index].request
    body = request.body
    assert isinstance(body, bytes)
    return body, dict(request.headers)


def test_a_delivery_carries_the_standard_webhooks_headers(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=204)
    outcome = deliver(URL, SECRET, EVENT, session=requests.Session(), now=lambda: 1714566600.9)
    assert outcome == tracker_webhook.Outcome("delivered", 204, "HTTP 204")
    body, headers = sent(mocked)
    assert body == event_json.to_json(EVENT).encode()
    assert headers["webhook-id"] == EVENT.id
    assert headers["webhook-timestamp"] == "1714566600"
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"


def test_a_receiver_verifying_with_standardwebhooks_accepts_the_delivery(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=200)
    deliver(URL, SECRET, EVENT, session=requests.Session())
    body, headers = sent(mocked)
    assert Webhook(SECRET).verify(body, headers) == event_json.to_payload(EVENT)


def test_a_tampered_body_or_another_secret_is_rejected(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=200)
    deliver(URL, SECRET, EVENT, session=requests.Session())
    body, headers = sent(mocked)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b'"resolved"', b'"ignored"'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(tracker_webhook.new_secret()).verify(body, headers)


def test_a_retry_keeps_the_id_and_signs_a_new_timestamp(mocked: responses.RequestsMock) -> None:
    mocked.post(URL, status=503)
    mocked.post(URL, status=200)
    session = requests.Session()
    deliver(URL, SECRET, EVENT, session=session, now=lambda: 1714566600.0)
    deliver(URL, SECRET, EVENT, session=session, now=lambda: 1714566605.0)
    (_, first), (_, second) = sent(mocked, 0), sent(mocked, 1)
    assert first["webhook-id"] == second["webhook-id"] == EVENT.id
    assert (first["webhook-timestamp"], second["webhook-timestamp"]) == ("1714566600", "1714566605")
    assert first["webhook-signature"] != second["webhook-signature"]


@pytest.mark.parametrize(("status", "kind"), [
    (200, "delivered"), (202, "delivered"), (204, "delivered"),
    (410, "gone"),
    (400, "failed"), (413, "failed"), (415, "failed"), (422, "failed"),
    (408, "retry"), (409, "retry"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"),
    # the endpoint or its secret is being configured: a day of retries leaves time to fix it
    (301, "retry"), (302, "retry"), (401, "retry"), (403, "retry"), (404, "retry"),
])
def test_outcome_per_status(mocked: responses.RequestsMock, status: int, kind: str) -> None:
    mocked.post(URL, status=status, headers={"Location": "http://169.254.169.254/"} if status < 400 else {})
    outcome = deliver(URL, SECRET, EVENT, session=requests.Session())
    assert (outcome.kind, outcome.status) == (kind, status)
    assert len(mocked.calls) == 1  # redirects are not followed


@pytest.mark.parametrize(("header", "expected"), [
    ("30", 30.0),
    ("0", 1.0),  # clamped to 1 s - 1 h
    ("86400", 3600.0),
    ("soon", None),
])
def test_retry_after_is_honoured_and_clamped(mocked: responses.RequestsMock, header: str,
                                             expected: float | None) -> None:
    mocked.post(URL, status=429, headers={"Retry-After": header})
    outcome = deliver(URL, SECRET, EVENT, session=requests.Session())
    assert (outcome.kind, outcome.retry_after) == ("retry", expected)


@pytest.mark.parametrize(("error", "reason"), [
    (requests.ConnectTimeout("connect to https://tracker.example.com/hooks/ado?token=abc timed out"), "timed out"),
    (requests.ReadTimeout("read timed out for URL ...?token=abc"), "timed out"),
    (requests.ConnectionError("Max retries exceeded with url: /hooks/ado?token=abc"), "connection failed"),
    (requests.exceptions.SSLError("certificate verify failed for tracker.example.com"), "TLS handshake failed"),
])
def test_network_errors_are_retried_with_a_generic_reason(mocked: responses.RequestsMock, error: Exception,
                                                          reason: str) -> None:
    mocked.post(URL, body=error)
    outcome = deliver(URL, SECRET, EVENT, session=requests.Session())
    assert outcome == tracker_webhook.Outcome("retry", None, reason)
    assert "token" not in repr(outcome)


def test_neither_secret_nor_signature_is_logged(mocked: responses.RequestsMock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mocked.post(URL, status=500)
    deliver(URL, SECRET, EVENT, session=requests.Session())
    _, headers = sent(mocked)
    logged = " ".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert EVENT.id in logged
    for secret_part in (SECRET, SECRET.removeprefix("whsec_"), headers["webhook-signature"].removeprefix("v1,")):
        assert secret_part not in logged


@pytest.mark.parametrize("secret", [
    None,
    "",
    base64.b64encode(bytes(32)).decode(),  # no prefix
    "whsec_",
    "whsec_" + base64.b64encode(bytes(16)).decode(),  # too short
    "whsec_" + base64.b64encode(bytes(65)).decode(),  # too long
    "whsec_not*base64*at*all*padding*xx",
    "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 30).decode(),  # URL-safe alphabet
    "whsk_" + base64.b64encode(bytes(32)).decode(),  # an asymmetric key
])
def test_a_malformed_secret_is_a_config_error_naming_the_setting(secret: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        deliver(URL, secret, EVENT, session=requests.Session())  # type: ignore[arg-type]
    assert "TRACKER_WEBHOOK_SECRET" in caught.value.message
    if secret and secret != "whsec_":
        assert secret.removeprefix("whsec_") not in caught.value.message


@pytest.mark.parametrize("secret", [
    "whsec_" + base64.b64encode(bytes(24)).decode(),
    "whsec_" + base64.b64encode(bytes(64)).decode(),
    "whsec_" + base64.b64encode(bytes(32)).decode().rstrip("="),  # unpadded, as some providers print them
])
def test_well_formed_secrets_are_accepted(secret: str) -> None:
    assert tracker_webhook.check_secret(secret) == secret


def test_new_secrets_are_well_formed_and_distinct() -> None:
    first, second = tracker_webhook.new_secret(), tracker_webhook.new_secret()
    assert first != second
    assert tracker_webhook.check_secret(first) == first
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


@pytest.mark.parametrize("url", [
    "http://tracker.example.com/hook",
    "http://10.0.0.5/hook",
    "http://127.0.0.1.example.com/hook",
    "ftp://tracker.example.com/hook",
    "tracker.example.com/hook",
    "https:///hook",
    "https://tracker.example.com:99999/hook",
    " https://tracker.example.com/hook",
    "",
])
def test_urls_must_be_https_or_loopback_http(url: str) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        with pytest.raises(ConfigError) as caught:
            deliver(url, SECRET, EVENT, session=requests.Session())
        assert not mock.calls
    assert "TRACKER_WEBHOOK_URL" in caught.value.message


@pytest.mark.parametrize("url", [
    "https://tracker.example.com/hook",
    "http://localhost:8080/hook",
    "http://127.0.0.1:8080/hook",
    "http://[::1]:8080/hook",
])
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert tracker_webhook.check_url(url) == url

