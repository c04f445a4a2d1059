"""No token or secret in any log record or API answer of a full run (install, webhooks, sync, checks)."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import pytest
from conftest import MANAGE_KEY, Bundle, wait_for
from reliability_support import private_bundle, queue_host_json

from shared.compose import Services
from shared.core.models import Integration

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
STANDARD = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}


class Recorder:
    """Calls the bundle and keeps every answer body, to scan them afterwards."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.bodies: list[str] = []

    def api(self, method: str, path: str, body: Any = None, *, key: str | None = MANAGE_KEY) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = self.bundle.http.request(method, f"{self.bundle.url}/api/{path}", json=body, headers=headers,
                                            timeout=60)
        self.bodies.append(response.text)
        return response.status_code, response.json() if response.content else None

    def webhook(self, payload: dict[str, Any], secret: str, *, basic: bool = False) -> int:
        headers = {"Authorization": "Basic " + base64.b64encode(f"ado-sync:{secret}".encode()).decode()} if basic \
            else {"shared-secret": secret}
        response = self.bundle.http.post(f"{self.bundle.url}/api/vsts/issue-updated", json=payload,
                                         headers=headers, timeout=60)
        self.bodies.append(response.text)
        return response.status_code


def debug_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level not in (logging.NOTSET, logging.DEBUG):
            caplog.set_level(logging.DEBUG, logger=name)


@pytest.mark.slow
def test_no_secret_in_logs_or_answers(sandbox_ado: Any, uid: str, caplog: pytest.LogCaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = sandbox_ado
    granted: list[str] = []
    grant = sandbox.state.grant

    def recording_grant(form: dict[str, str]) -> dict[str, Any]:
        answer: dict[str, Any] = grant(form)
        granted.extend([answer["access_token"], answer["refresh_token"]])
        return answer

    monkeypatch.setattr(sandbox.state, "grant", recording_grant)
    debug_everywhere(caplog)
    # A 1 s visibility timeout: the failed outbound PATCH is retried without a 10 s wait.
    with private_bundle(host_json=queue_host_json(visibilityTimeout="00:00:01")) as (bundle, _, svc):
        run = Recorder(bundle)
        secrets = [MANAGE_KEY, "sandbox-client-secret", *full_run(svc, run, sandbox, uid)]
        for org in (f"pat{uid}", f"oau{uid}"):
            for sub in sandbox.subscriptions(org):
                secrets.append(sub["consumerInputs"]["basicAuthPassword"])
        secrets += granted

    secrets = sorted({s for s in secrets if s})
    assert len(secrets) >= 8
    forms = {s: s for s in secrets}
    for secret in secrets:  # what a careless log of a header would show
        forms[base64.b64encode(f":{secret}".encode()).decode()] = secret
        forms[base64.b64encode(f"ado-sync:{secret}".encode()).decode()] = secret
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = list(run.bodies)
    for record in caplog.records:
        texts.append(formatter.format(record))
        texts.append(repr(record.args))
        texts.append(repr({k: v for k, v in vars(record).items() if k not in STANDARD}))
    assert len(caplog.records) > 200, "the run was not captured"
    leaks = {(forms[form], text[:200]) for text in texts for form in forms if form in text}
    assert not leaks, f"{len(leaks)} leaks, e.g. {sorted(leaks)[:3]}"


def full_run(svc: Services, run: Recorder, sandbox: Any, uid: str) -> list[str]:
    """Install a PAT org and an OAuth org, sync both ways, check hooks; returns the secrets used."""
    secrets: list[str] = []
    orgs = []
    for kind, name in (("pat", f"pat{uid}"), ("oauth", f"oau{uid}")):
        account = sandbox.add_organization(name)
        project = sandbox.add_project(name, "Web")
        email = f"ann-{name}@example.com"
        sandbox.add_user(name, "Ann Example", email)
        if kind == "pat":
            pat = sandbox.add_pat(name)
            identity: dict[str, Any] = {"kind": "pat", "access_token": pat}
            secrets.append(pat)
        else:
            tokens = sandbox.issue_token(name, expires_in=1)  # refreshed on first use
            identity = {"kind": "oauth", "access_token": tokens["access_token"],
                        "refresh_token": tokens["refresh_token"], "expires_at": tokens["expires_at"]}
            secrets += [tokens["access_token"], tokens["refresh_token"]]
        tracker = f"t{name}"
        status, view = run.api("PUT", f"manage/integrations/{account}", {
            "account_name": name, "organization_id": tracker, "domain_name": sandbox.instance_url(name),
            "identity": identity,
            "config": {"sync_status_forward": {project: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
                       "sync_status_reverse": True, "sync_forward_assignment": True, "sync_reverse_assignment": True},
        })
        assert status == 200, view
        user = {"emails": [email], "projects": ["web"]}
        assert run.api("PUT", f"manage/organizations/{tracker}/users/ann", user)[0] == 200
        assert run.api("PUT", f"manage/organizations/{tracker}/groups/g1",
                       {"project_id": "web", "title": "TypeError", "status": "unresolved", "assignee": None})[0] == 200
        status, issue = run.api("POST", f"manage/integrations/{account}/organizations/{tracker}/issues",
                                {"group_id": "g1", "project": project, "work_item_type": "Bug", "title": "TypeError",
                                 "description": "Seen **42** times"})
        assert status in (200, 201), issue
        orgs.append((name, account, tracker, int(issue["key"])))

    # A refused install: the wrong PAT must not be echoed either.
    bad_pat = "bad-pat-" + uid * 3
    secrets.append(bad_pat)
    wrong = sandbox.add_organization(f"bad{uid}")
    status, _ = run.api("PUT", f"manage/integrations/{wrong}", {
        "account_name": f"bad{uid}", "organization_id": f"tbad{uid}", "domain_name": sandbox.instance_url(f"bad{uid}"),
        "identity": {"kind": "pat", "access_token": bad_pat}})
    assert status == 422
    assert run.api("GET", f"manage/integrations/{orgs[0][1]}", key="wrong-key")[0] == 401

    for name, account, tracker, key in orgs:
        group = lambda tracker=tracker: run.api("GET", f"manage/organizations/{tracker}/groups/g1")[1]  # noqa: E731
        # Inbound through the real service hook (basic auth and shared-secret header) ...
        sandbox.update_work_item(name, key, state="Resolved", assigned_to=f"ann-{name}@example.com")
        wait_for(lambda group=group: group()["status"] == "resolved" and group()["assignee"] == "ann",
                 what=f"the hook to resolve {name}")
        # ... and by hand, with the right secret, a wrong one, and none.
        (sub,) = sandbox.subscriptions(name)
        secret = sub["consumerInputs"]["basicAuthPassword"]
        payload = sandbox.work_item(name, key)  # any body for this collection: only the answers matter here
        # Its revision is one Azure DevOps never had: the conditional push below must still get through.
        hook = {"eventType": "workitem.updated", "id": f"manual-{uid}", "resourceContainers": {
            "collection": {"id": account}}, "resource": {"workItemId": key, "rev": payload["rev"] + 1, "fields": {
                "System.State": {"oldValue": "Resolved", "newValue": "Active"}}}}
        assert run.webhook(hook, secret + "x") == 401
        assert run.webhook(hook, "") == 401
        assert run.webhook(hook, secret, basic=True) == 200
        assert group()["status"] == "unresolved"
        # Outbound, with one failed PATCH on the way (retried by the queue).
        sandbox.inject_fault("500", times=1, path_contains=f"/{name}/_apis/wit/workitems/")
        assert run.api("PATCH", f"manage/organizations/{tracker}/groups/g1", {"status": "resolved"})[0] == 200
        wait_for(lambda group=group: any(a["kind"] == "outbound_status" for a in group()["activity"]),
                 timeout=60, what=f"sync-outbound for {name}")
        assert any(c.get("fault") == "500" and f"/{name}/" in c["path"] for c in sandbox.calls)

    # Subscription checks: one healthy hook, one disabled and replaced (with a new secret).
    started = time.time()
    sandbox.set_subscription_status(orgs[1][0], sandbox.subscriptions(orgs[1][0])[0]["id"], "disabledBySystem")
    for _, account, tracker, _ in orgs:
        svc.store.integrations.update(account, lambda i: Integration(**{**i.__dict__, "last_checked": 1.0}))
        svc.send("subscription-check", {"integration_id": account, "organization_id": tracker})
    for _, account, _, _ in orgs:
        wait_for(lambda account=account: (svc.store.integrations.get(account).last_checked or 0) >= started,  # type: ignore[union-attr]
                 timeout=60, what="the subscription checks")
        assert run.api("GET", f"manage/integrations/{account}")[0] == 200
    sandbox.wait_idle(10)
    for _, account, _, _ in orgs:
        loaded = svc.store.integrations.load_identity(account)
        assert loaded is not None
        secrets += [loaded[0].access_token, loaded[0].refresh_token or ""]
    return secrets
