"""PAT and OAuth auth: refresh before expiry, refused refreshes, concurrent refreshes, no leaked tokens."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import itertools
import json
import logging
import threading
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from shared.adapters.ado_auth import OAuthAuth, PatAuth, auth_for
from shared.adapters.ado_client import AdoClient
from shared.config import Settings
from shared.core.errors import AdoServerError, AdoTimeout, AdoUnavailable, ConfigError, IdentityInvalid
from shared.core.models import Identity

HOST = "https://127.0.0.1:8443"
TOKEN_URL = HOST + "/login/oauth2/v2.0/token"
BASE = HOST + "/fabrikam/"
NOW = 1_800_000_000.0
ACCOUNT = "acct-1"
OLD_ACCESS = "old-access-T0KEN"
OLD_REFRESH = "old-refresh-T0KEN"
CLIENT_SECRET = "client-s3cret"


def make_settings(**extra: str) -> Settings:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "ADO_CLIENT_ID": "client-id",
        "ADO_CLIENT_SECRET": CLIENT_SECRET,
        "ADO_TOKEN_URL": TOKEN_URL,
    }
    env.update(extra)
    return Settings.from_env(env)


class MemoryRepo:
    """A thread-safe in-memory IdentityRepo with ETags, like the table store's contract."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[Identity, str]] = {}
        self._etags = itertools.count(1)
        self.saves = 0
        self.conflicts = 0

    def put(self, account_id: str, identity: Identity) -> None:
        with self._lock:
            self._rows[account_id] = (dataclasses.replace(identity), f"W/{next(self._etags)}")

    def get(self, account_id: str) -> Identity:
        return dataclasses.replace(self._rows[account_id][0])

    def load_identity(self, account_id: str) -> tuple[Identity, str] | None:
        with self._lock:
            row = self._rows.get(account_id)
            return (dataclasses.replace(row[0]), row[1]) if row else None

    def save_identity(self, account_id: str, identity: Identity, etag: str) -> bool:
        with self._lock:
            row = self._rows.get(account_id)
            if row is None or row[1] != etag:
                self.conflicts += 1
                return False
            self._rows[account_id] = (dataclasses.replace(identity), f"W/{next(self._etags)}")
            self.saves += 1
            return True


def oauth_identity(expires_at: float | None, **changes: Any) -> Identity:
    identity = Identity(kind="oauth", access_token=OLD_ACCESS, refresh_token=OLD_REFRESH, expires_at=expires_at)
    return dataclasses.replace(identity, **changes)


@pytest.fixture
def repo() -> MemoryRepo:
    return MemoryRepo()


@pytest.fixture
def wire() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # Storage calls of a bundle running in the background (plain http on loopback) are not ours.
        rsps.add_passthru("http://127.0.0.1")
        yield rsps


def make_auth(repo: MemoryRepo, **kwargs: Any) -> OAuthAuth:
    return OAuthAuth(ACCOUNT, repo, settings=make_settings(), clock=lambda: NOW, **kwargs)


def token_answer(n: int, *, with_refresh: bool = True) -> dict[str, Any]:
    answer: dict[str, Any] = {"access_token": f"new-access-{n}", "token_type": "Bearer", "expires_in": 3600}
    if with_refresh:
        answer["refresh_token"] = f"new-refresh-{n}"
    return answer


# -- PAT -----------------------------------------------------------------------------------------


def test_pat_auth_is_basic_with_empty_user() -> None:
    auth = PatAuth("my-pat")
    assert auth.header() == "Basic " + base64.b64encode(b":my-pat").decode()
    assert auth.on_unauthorized() is False
    assert "my-pat" not in repr(auth)


def test_auth_for_picks_by_kind(repo: MemoryRepo) -> None:
    repo.put("pat-acct", Identity(kind="pat", access_token="the-pat"))
    repo.put(ACCOUNT, oauth_identity(NOW + 3600))

    pat = auth_for("pat-acct", repo, settings=make_settings())
    oauth = auth_for(ACCOUNT, repo, settings=make_settings())

    assert isinstance(pat, PatAuth)
    assert pat.header() == "Basic " + base64.b64encode(b":the-pat").decode()
    assert isinstance(oauth, OAuthAuth)
    assert oauth.header() == f"Bearer {OLD_ACCESS}"


def test_auth_for_without_identity_raises(repo: MemoryRepo) -> None:
    with pytest.raises(IdentityInvalid, match="No identity"):
        auth_for("nobody", repo)


# -- refresh before expiry -----------------------------------------------------------------------


def test_fresh_token_is_used_without_refresh(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW + 3600))

    assert make_auth(repo).header() == f"Bearer {OLD_ACCESS}"

    assert len(wire.calls) == 0
    assert repo.saves == 0 and repo.get(ACCOUNT).access_token == OLD_ACCESS


def test_token_expiring_within_margin_is_refreshed_and_saved(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW + 60))
    wire.post(TOKEN_URL, json=token_answer(1))

    assert make_auth(repo).header() == "Bearer new-access-1"

    (call,) = wire.calls
    assert parse_qs(call.request.body) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [OLD_REFRESH],
        "client_id": ["client-id"],
        "client_secret": [CLIENT_SECRET],
    }
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.request.req_kwargs["timeout"] is not None
    stored = repo.get(ACCOUNT)
    assert (stored.access_token, stored.refresh_token) == ("new-access-1", "new-refresh-1")
    assert stored.expires_at == NOW + 3600 and stored.status == "valid"


def test_refreshed_token_is_reused_until_it_expires(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW - 10))
    wire.post(TOKEN_URL, json=token_answer(1))
    auth = make_auth(repo)

    assert auth.header() == auth.header() == "Bearer new-access-1"
    assert len(wire.calls) == 1, [c.request.url for c in wire.calls]


def test_refresh_without_new_refresh_token_keeps_the_old_one(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW - 10))
    wire.post(TOKEN_URL, json=token_answer(2, with_refresh=False))

    make_auth(repo).header()

    assert repo.get(ACCOUNT).refresh_token == OLD_REFRESH
    assert repo.get(ACCOUNT).access_token == "new-access-2"


def test_other_workers_refresh_is_picked_up_instead_of_refreshing(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW + 3600))
    auth = make_auth(repo)
    auth.header()
    # Time passes: our cached token nears expiry, and another worker already refreshed.
    repo.put(ACCOUNT, dataclasses.replace(oauth_identity(NOW + 7200), access_token="other-worker-token"))
    later = OAuthAuth(ACCOUNT, repo, settings=make_settings(), clock=lambda: NOW + 3500)
    later._cached = auth._cached

    assert later.header() == "Bearer other-worker-token"
    assert len(wire.calls) == 0


# -- refused refreshes ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401])
def test_refused_refresh_marks_identity_invalid_and_stops_calling(repo: MemoryRepo, wire: Any, status: int) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW - 10))
    wire.post(
        TOKEN_URL,
        status=status,
        json={"error": "invalid_grant", "error_description": f"AADSTS70000: token {OLD_REFRESH} is bad"},
    )
    auth = make_auth(repo)

    with pytest.raises(IdentityInvalid) as info:
        auth.header()

    stored = repo.get(ACCOUNT)
    assert stored.status == "invalid"
    assert stored.problem and "invalid_grant" in stored.problem
    for text in (str(info.value), stored.problem):
        assert OLD_REFRESH not in text and OLD_ACCESS not in text and CLIENT_SECRET not in text

    # Neither this object nor a freshly built one calls the token URL again.
    with pytest.raises(IdentityInvalid):
        auth.header()
    with pytest.raises(IdentityInvalid):
        make_auth(repo).header()
    assert len(wire.calls) == 1, [c.request.url for c in wire.calls]


def test_refusal_after_a_concurrent_rotation_does_not_invalidate(repo: MemoryRepo, wire: Any) -> None:
    """Our refresh token was rotated away by another worker; its good token set must survive."""
    repo.put(ACCOUNT, oauth_identity(NOW - 10))

    def refused(request: Any) -> tuple[int, dict[str, str], str]:
        repo.put(ACCOUNT, Identity("oauth", "winner-access", "winner-refresh", NOW + 3600))
        return 400, {}, json.dumps({"error": "invalid_grant"})

    wire.add_callback(responses.POST, TOKEN_URL, callback=refused)

    assert make_auth(repo).header() == "Bearer winner-access"
    stored = repo.get(ACCOUNT)
    assert stored.status == "valid" and stored.refresh_token == "winner-refresh"


def test_missing_refresh_token_is_invalid(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW - 10, refresh_token=None))
    with pytest.raises(IdentityInvalid, match="refresh token"):
        make_auth(repo).header()
    assert len(wire.calls) == 0
    assert repo.get(ACCOUNT).status == "invalid"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"status": 500, "json": {"error": "server_error"}}, AdoServerError),
        ({"body": requests.exceptions.ReadTimeout()}, AdoTimeout),
    ],
)
def test_token_endpoint_outage_is_transient(
    repo: MemoryRepo, wire: Any, reply: dict[str, Any], error: type[Exception]
) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW - 10))
    wire.post(TOKEN_URL, **reply)

    with pytest.raises(error) as info:
        make_auth(repo).header()

    assert isinstance(info.value, AdoUnavailable)
    assert repo.get(ACCOUNT).status == "valid"  # a retry later can still refresh
    assert OLD_REFRESH not in str(info.value) and CLIENT_SECRET not in str(info.value)


def test_missing_client_secret_names_the_setting(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW - 10))
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ADO_CLIENT_ID": "x"})
    auth = OAuthAuth(ACCOUNT, repo, settings=settings, clock=lambda: NOW)
    with pytest.raises(ConfigError, match="ADO_CLIENT_SECRET"):
        auth.header()
    assert len(wire.calls) == 0


# -- 401 from ADO --------------------------------------------------------------------------------


def test_on_unauthorized_forces_a_refresh(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW + 3600))
    wire.post(TOKEN_URL, json=token_answer(3))
    auth = make_auth(repo)
    auth.header()

    assert auth.on_unauthorized() is True
    assert auth.header() == "Bearer new-access-3"
    assert repo.get(ACCOUNT).refresh_token == "new-refresh-3"


def test_client_retries_a_401_once_after_refresh(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW + 3600))
    wire.post(TOKEN_URL, json=token_answer(4))
    wire.get(BASE + "_apis/wit/workitems/1", status=401, json={"message": "TF400813: revoked"})
    wire.get(BASE + "_apis/wit/workitems/1", json={"id": 1})
    client = AdoClient(base_url=BASE, auth=make_auth(repo), sleep=lambda _: None)

    assert client.get_work_item(1) == {"id": 1}

    auth_headers = [c.request.headers.get("Authorization") for c in wire.calls if "workitems" in c.request.url]
    assert auth_headers == [f"Bearer {OLD_ACCESS}", "Bearer new-access-4"]


# -- concurrency ---------------------------------------------------------------------------------


def test_two_workers_refreshing_at_once_keep_one_token_set(repo: MemoryRepo, wire: Any) -> None:
    repo.put(ACCOUNT, oauth_identity(NOW - 10))
    counter = itertools.count(1)
    both_refreshing = threading.Barrier(2, timeout=5)

    def token_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
        n = next(counter)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_refreshing.wait()  # make both workers refresh before either saves
        return 200, {}, json.dumps(token_answer(n))

    wire.add_callback(responses.POST, TOKEN_URL, callback=token_endpoint)
    workers = [make_auth(repo), make_auth(repo)]
    headers: list[str] = []
    errors: list[BaseException] = []

    def run(auth: OAuthAuth) -> None:
        try:
            headers.append(auth.header())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert errors == []
    assert len(wire.calls) == 2  # both really refreshed concurrently
    stored = repo.get(ACCOUNT)
    n = stored.access_token.removeprefix("new-access-")
    assert stored.refresh_token == f"new-refresh-{n}"  # access and refresh token from the same answer
    assert repo.saves == 1 and repo.conflicts >= 1
    assert headers == [f"Bearer {stored.access_token}"] * 2
    assert stored.status == "valid" and stored.expires_at == NOW + 3600


# -- secrets -------------------------------------------------------------------------------------


def test_no_token_in_reprs_or_logs(repo: MemoryRepo, wire: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo.put(ACCOUNT, oauth_identity(NOW - 10))
    wire.post(TOKEN_URL, json=token_answer(5))
    auth = make_auth(repo)

    value = auth.header()

    secrets = [OLD_ACCESS, OLD_REFRESH, "new-access-5", "new-refresh-5", CLIENT_SECRET]
    texts = [repr(auth), repr(repo.get(ACCOUNT)), value.removeprefix("Bearer new-access-5")]
    for record in caplog.records:
        if record.name.startswith("shared."):
            texts.append(record.getMessage())
            texts.append(repr(record.__dict__))
    assert any(r.name == "shared.adapters.ado_auth" for r in caplog.records)
    for text in texts:
        for secret in secrets:
            assert secret not in text
