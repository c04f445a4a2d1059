"""Rotating an integration's service-hook secret with no lost delivery (shared/flows/rotation.py,
hook_swap.py), through the flow and the management route, on Azurite and the sandbox ADO.

Deliveries are posted to the webhook flow as Azure DevOps would send them: signed with the secret of
the hook that sends them. A clock decides whether the overlap is still running.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
import pytest
import requests
from conftest import RecordingSend, StubContext, load_fixture

from manage_http import security_routes
from shared import compose, config
from shared.compose import Services
from shared.core import overlap
from shared.core.errors import BundleError, Conflict, NotFound, Unprocessable
from shared.flows import inbound, install, lifecycle, rotation

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"
START = 1_900_000_000.0
KEY = "rotation-manage-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Org:
    sandbox: Any
    name: str
    account_id: str
    pat: str
    clock: Clock
    svc: Services

    def body(self) -> dict[str, Any]:
        return {"account_name": self.name, "organization_id": f"t-{self.name}",
                "domain_name": self.sandbox.instance_url(self.name),
                "identity": {"kind": "pat", "access_token": self.pat}}

    def hooks(self) -> list[dict[str, Any]]:
        return list(self.sandbox.subscriptions(self.name))

    def current(self) -> dict[str, Any]:
        integration = self.svc.store.integrations.get(self.account_id)
        assert integration is not None
        [hook] = [h for h in self.hooks() if h["id"] == integration.subscription_id]
        return hook

    def secret(self) -> str:
        return str(self.current()["consumerInputs"]["basicAuthPassword"])

    def check(self, at: float) -> None:
        """The subscription check of the organization's link, run at time `at`."""
        self.clock.now = at
        lifecycle.check_subscription(self.svc, {"integration_id": self.account_id,
                                                "organization_id": f"t-{self.name}"})

    def deliver(self, secret: str, svc: Services | None = None) -> int:
        """Post a `workitem.updated` delivery signed with `secret`; the status the webhook answers."""
        payload = load_fixture("workitem-updated-state-active-to-resolved.json")
        payload["resourceContainers"]["collection"]["id"] = self.account_id
        try:
            return inbound.handle(svc or self.svc, json.dumps(payload).encode(), {"shared-secret": secret}).status
        except BundleError as error:
            return error.status


@pytest.fixture
def org(sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> Org:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    name = f"rot{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-rot-{uid}")
    clock = Clock()
    found = Org(sandbox_ado, name, account_id, sandbox_ado.add_pat(name), clock,
                compose.build(clock=clock, send=RecordingSend()))
    install.install(found.svc, account_id, found.body())
    return found


def test_rotation_accepts_the_old_secret_during_the_overlap_only(org: Org) -> None:
    old_hook = org.current()
    old = org.secret()

    reply = rotation.rotate_secret(org.svc, org.account_id)

    new_hook = org.current()
    new = org.secret()
    assert new_hook["id"] != old_hook["id"] and new != old and new_hook["status"] == "enabled"
    assert reply.status == 200 and reply.body["subscription"]["id"] == new_hook["id"]
    shown = json.dumps(reply.body)
    assert new not in shown and old not in shown and "hash" not in shown
    # The old hook keeps running (events queued for it alone still arrive), and a check is queued
    # for when it may go.
    assert {h["id"] for h in org.hooks()} == {old_hook["id"], new_hook["id"]}
    check = {"integration_id": org.account_id, "organization_id": f"t-{org.name}"}
    assert (lifecycle.QUEUE, check, overlap.DRAIN_SECONDS + 1) in org.svc.send.sent  # type: ignore[attr-defined]
    org.check(START + overlap.DRAIN_SECONDS - 1)
    assert {h["id"] for h in org.hooks()} == {old_hook["id"], new_hook["id"]}
    assert (org.deliver(old), org.deliver(new)) == (200, 200)
    org.check(START + overlap.DRAIN_SECONDS + 1)
    assert [h["id"] for h in org.hooks()] == [new_hook["id"]]
    # Deliveries the old hook sent (or retries) before it was deleted still authenticate ...
    org.clock.now = START + overlap.OVERLAP_SECONDS - 1
    assert (org.deliver(old), org.deliver(new)) == (200, 200)
    # ... and after the overlap only the new secret does.
    org.clock.now = START + overlap.OVERLAP_SECONDS + 1
    assert (org.deliver(old), org.deliver(new)) == (401, 200)
    assert org.deliver("never-issued") == 401
    integration = org.svc.store.integrations.get(org.account_id)
    assert integration is not None and integration.retired_hooks == {}


class Intercepting(requests.Session):
    """Runs `on_create(secret)` when a service hook is about to be created, and `refuse` answers 403."""

    def __init__(self, on_create: Any = None, *, refuse: bool = False) -> None:
        super().__init__()
        self.on_create = on_create
        self.refuse = refuse

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if method == "POST" and urlsplit(str(url)).path.endswith("/_apis/hooks/subscriptions"):
            if self.on_create is not None:
                self.on_create(kwargs["json"]["consumerInputs"]["basicAuthPassword"])
            if self.refuse:
                answer = requests.Response()
                answer.status_code, answer.url = 403, str(url)
                answer.request = requests.Request(str(method), str(url)).prepare()
                answer.headers["Content-Type"] = "application/json"
                answer._content = b'{"message": "TF400813: not authorized", "typeKey": "UnauthorizedRequestException"}'
                return answer
        return super().request(method, url, *args, **kwargs)


def test_the_new_secret_is_accepted_before_its_hook_exists(org: Org) -> None:
    # Azure DevOps may deliver through the new hook before the bundle has stored it; a 401 then would
    # put the new hook on probation, where new events are dropped.
    answers: list[int] = []
    svc = compose.build(clock=org.clock, session=Intercepting(lambda secret: answers.append(org.deliver(secret))))

    rotation.rotate_secret(svc, org.account_id)

    assert answers == [200]


def test_a_refused_rotation_keeps_the_old_hook_and_accepts_nothing_new(org: Org) -> None:
    [before] = org.hooks()
    old = org.secret()
    offered: list[str] = []
    svc = compose.build(clock=org.clock, session=Intercepting(offered.append, refuse=True))

    with pytest.raises(Unprocessable, match="Please ensure"):
        rotation.rotate_secret(svc, org.account_id)

    assert [h["id"] for h in org.hooks()] == [before["id"]]
    integration = org.svc.store.integrations.get(org.account_id)
    assert integration is not None and integration.subscription_id == before["id"]
    assert integration.overlap_secrets == {}
    assert org.deliver(offered[0]) == 401
    org.clock.now = START + 10 * overlap.OVERLAP_SECONDS
    assert org.deliver(old) == 200


def test_rotating_an_unknown_or_inactive_integration(org: Org, uid: str) -> None:
    with pytest.raises(NotFound):
        rotation.rotate_secret(org.svc, f"nobody-{uid}")
    org.svc.store.integrations.update(org.account_id, lambda i: type(i)(**{**i.__dict__, "status": "disabled"}))
    with pytest.raises(Conflict):
        rotation.rotate_secret(org.svc, org.account_id)
    assert len(org.hooks()) == 1


def test_reinstall_that_replaces_the_hook_keeps_the_old_secret_for_the_overlap(org: Org) -> None:
    old_hook = org.current()
    old = org.secret()
    org.sandbox.set_subscription_status(org.name, old_hook["id"], "disabledBySystem")

    install.install(org.svc, org.account_id, org.body())

    # A disabled hook delivers nothing more: it is deleted at once.
    [new_hook] = org.hooks()
    assert new_hook["id"] != old_hook["id"]
    org.clock.now = START + overlap.OVERLAP_SECONDS - 1
    assert (org.deliver(old), org.deliver(org.secret())) == (200, 200)
    org.clock.now = START + overlap.OVERLAP_SECONDS + 1
    assert (org.deliver(old), org.deliver(org.secret())) == (401, 200)


def test_reinstall_that_reuses_the_hook_keeps_a_running_overlap(org: Org) -> None:
    old = org.secret()
    rotation.rotate_secret(org.svc, org.account_id)
    org.clock.now = START + 60

    install.install(org.svc, org.account_id, org.body())

    assert org.deliver(old) == 200


def test_the_subscription_checks_repair_keeps_the_old_secret_for_the_overlap(org: Org) -> None:
    old_hook = org.current()
    old = org.secret()
    org.sandbox.set_subscription_status(org.name, old_hook["id"], "onProbation")

    org.check(START)

    new_hook = org.current()
    assert new_hook["id"] != old_hook["id"]
    # A hook on probation still sends its retries: it drains before it is deleted.
    assert {h["id"] for h in org.hooks()} == {old_hook["id"], new_hook["id"]}
    org.check(START + overlap.DRAIN_SECONDS + 1)
    assert [h["id"] for h in org.hooks()] == [new_hook["id"]]
    org.clock.now = START + overlap.OVERLAP_SECONDS - 1
    assert (org.deliver(old), org.deliver(org.secret())) == (200, 200)
    org.clock.now = START + overlap.OVERLAP_SECONDS + 1
    assert org.deliver(old) == 401


def call_route(account_id: str, key: str | None = KEY) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    req = func.HttpRequest("POST", f"http://localhost/api/manage/integrations/{account_id}/rotate-secret",
                           headers=headers, route_params={"account_id": account_id}, body=b"")
    response = security_routes.manage_rotate_secret(req, StubContext())
    text = response.get_body()
    return response.status_code, json.loads(text) if text else None


def test_the_route_rotates_and_answers_the_view_without_secrets(org: Org, env: pytest.MonkeyPatch,
                                                                 uid: str) -> None:
    env.setenv("MANAGE_API_KEY", KEY)
    config.reset()
    old = org.secret()

    assert call_route(org.account_id, key="wrong")[0] == 401
    assert org.secret() == old

    status, body = call_route(org.account_id)

    assert status == 200
    assert body["subscription"]["id"] == org.current()["id"] and body["account_id"] == org.account_id
    assert org.secret() != old and org.secret() not in json.dumps(body) and old not in json.dumps(body)
    assert call_route(f"nobody-{uid}")[0] == 404
    assert call_route("..")[0] == 400
