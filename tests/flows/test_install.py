"""Install, integration view, org config and ADO repository listing, against Azurite and the sandbox ADO."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from shared import compose, config
from shared.adapters import integrations, storage
from shared.adapters.ado_auth import PatAuth
from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import hooks, secrets
from shared.core.errors import AdoError, ConfigError, InvalidInput, NotFound, Unprocessable
from shared.core.hooks import hook_body
from shared.core.models import Identity, Repository
from shared.flows import install, migration

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"


@dataclass
class Ado:
    sandbox: Any
    name: str
    account_id: str
    project_id: str
    pat: str
    org_id: str

    def body(self, **changes: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"account_name": self.name, "organization_id": self.org_id,
                                "identity": {"kind": "pat", "access_token": self.pat}}
        body.update(changes)
        return body

    def client(self) -> AdoClient:
        return AdoClient(base_url=self.sandbox.instance_url(self.name), auth=PatAuth(self.pat))

    def hooks(self) -> list[dict[str, Any]]:
        return list(self.sandbox.subscriptions(self.name))


@pytest.fixture
def ado(sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> Ado:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    name = f"org{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-{uid}")
    project_id = sandbox_ado.add_project(name, "ProjectA")
    return Ado(sandbox_ado, name, account_id, project_id, sandbox_ado.add_pat(name), f"tracker-{uid}")


def partition_rows(account_id: str) -> list[dict[str, Any]]:
    return [dict(e) for e in storage.table(integrations.TABLE).query_entities(
        "PartitionKey eq @pk", parameters={"pk": account_id})]


class RefusingHookCreation(requests.Session):
    """An HTTP session on which Azure DevOps answers every service hook creation with 403."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if method == "POST" and urlsplit(str(url)).path.endswith("/_apis/hooks/subscriptions"):
            self.refused += 1
            answer = requests.Response()
            answer.status_code = 403
            answer.url = str(url)
            answer.request = requests.Request(method, str(url)).prepare()
            answer.headers["Content-Type"] = "application/json; charset=utf-8"
            answer._content = json.dumps({"message": "TF400813: The user is not authorized to access this resource.",
                                          "typeKey": "UnauthorizedRequestException"}).encode()
            return answer
        return super().request(method, url, *args, **kwargs)


def test_install_creates_the_hook_and_stores_only_the_secret_hash(svc: Services, ado: Ado) -> None:
    reply = install.install(svc, ado.account_id, ado.body())

    [hook] = ado.hooks()
    inputs = hook["consumerInputs"]
    secret = inputs["basicAuthPassword"]
    assert (hook["publisherId"], hook["eventType"], hook["resourceVersion"]) == ("tfs", "workitem.updated", "1.0")
    assert (hook["consumerId"], hook["consumerActionId"]) == ("webHooks", "httpRequest")
    assert inputs["url"] == WEBHOOK
    assert inputs["httpHeaders"] == f"shared-secret:{secret}"
    assert (inputs["resourceDetailsToSend"], inputs["messagesToSend"]) == ("all", "none")
    assert not hook["publisherInputs"].get("projectId")

    integration = svc.store.integrations.get(ado.account_id)
    assert integration is not None
    assert integration.account_name == ado.name
    assert integration.domain_name == ado.sandbox.instance_url(ado.name)
    assert integration.subscription_id == hook["id"]
    assert integration.status == "active"
    assert secrets.matches(secret, integration.secret_hash)
    assert secret not in json.dumps(partition_rows(ado.account_id), default=str)
    link = svc.store.integrations.get_org_link(ado.account_id, ado.org_id)
    assert link is not None and link.status == "active"

    view = reply.body
    assert reply.status == 200
    assert view["account_id"] == ado.account_id
    assert view["subscription"]["id"] == hook["id"]
    assert view["subscription"]["status"] == "enabled"
    assert view["organizations"] == [{"organization_id": ado.org_id, "status": "active", "config": {}}]
    shown = json.dumps(view)
    assert secret not in shown and ado.pat not in shown and integration.secret_hash not in shown


def test_install_removes_stray_hooks_to_the_same_url_but_not_others(ado: Ado) -> None:
    # A hook left by an earlier create that timed out, and somebody else's hook.
    stray = ado.client().create_subscription(hook_body(WEBHOOK, "old-secret"))
    other = ado.client().create_subscription(hook_body("https://elsewhere.example.test/hook", "x"))
    # Install runs long enough after them that the stray is no longer anybody's create in progress.
    later = compose.build(clock=lambda: time.time() + hooks.STRAY_MIN_AGE + 60)

    install.install(later, ado.account_id, ado.body())

    ids = {hook["id"] for hook in ado.hooks()}
    integration = later.store.integrations.get(ado.account_id)
    assert integration is not None
    assert ids == {integration.subscription_id, other["id"]}
    assert stray["id"] not in ids


def test_a_hook_created_moments_ago_is_not_taken_for_a_stray(svc: Services, ado: Ado) -> None:
    # Another install request for this organization, still finishing, created this one.
    in_flight = ado.client().create_subscription(hook_body(WEBHOOK, "their-secret"))
    install.install(svc, ado.account_id, ado.body())
    assert in_flight["id"] in {hook["id"] for hook in ado.hooks()}


def test_reinstall_reuses_an_enabled_hook(svc: Services, ado: Ado) -> None:
    install.install(svc, ado.account_id, ado.body())
    [first] = ado.hooks()
    before = svc.store.integrations.get(ado.account_id)

    install.install(svc, ado.account_id, ado.body(organization_id=ado.org_id + "-2"))

    assert [h["id"] for h in ado.hooks()] == [first["id"]]
    after = svc.store.integrations.get(ado.account_id)
    assert after is not None and before is not None
    assert (after.subscription_id, after.secret_hash) == (before.subscription_id, before.secret_hash)
    assert len(svc.store.integrations.read(ado.account_id).links) == 2


@pytest.mark.parametrize("damage", ["missing", "disabledBySystem", "disabledByUser"])
def test_reinstall_replaces_a_missing_or_disabled_hook(svc: Services, ado: Ado, damage: str) -> None:
    install.install(svc, ado.account_id, ado.body())
    [old] = ado.hooks()
    if damage == "missing":
        ado.client().delete_subscription(old["id"])
    else:
        ado.sandbox.set_subscription_status(ado.name, old["id"], damage)

    install.install(svc, ado.account_id, ado.body())

    [new] = ado.hooks()
    assert new["id"] != old["id"] and new["status"] == "enabled"
    integration = svc.store.integrations.get(ado.account_id)
    assert integration is not None and integration.subscription_id == new["id"]
    assert secrets.matches(new["consumerInputs"]["basicAuthPassword"], integration.secret_hash)


def test_reinstall_replaces_a_hook_pointing_at_an_old_webhook_url(
        svc: Services, ado: Ado, env: pytest.MonkeyPatch) -> None:
    install.install(svc, ado.account_id, ado.body())
    env.setenv("WEBHOOK_URL", "https://moved.example.test/api/vsts/issue-updated")
    config.reset()

    install.install(svc, ado.account_id, ado.body())

    integration = svc.store.integrations.get(ado.account_id)
    assert integration is not None
    [hook] = [h for h in ado.hooks() if h["id"] == integration.subscription_id]
    assert hook["consumerInputs"]["url"] == "https://moved.example.test/api/vsts/issue-updated"
    # The old hook was still delivering: it drains, and the subscription check deletes it later.
    [old] = [h for h in ado.hooks() if h["id"] != hook["id"]]
    assert list(integration.retired_hooks) == [old["id"]]


def test_domain_name_is_looked_up_when_missing(svc: Services, ado: Ado) -> None:
    install.install(svc, ado.account_id, ado.body())

    integration = svc.store.integrations.get(ado.account_id)
    assert integration is not None and integration.domain_name == ado.sandbox.instance_url(ado.name)


class Spy(requests.Session):
    """An HTTP session that records every host it is asked to reach."""

    def __init__(self) -> None:
        super().__init__()
        self.hosts: list[str] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.hosts.append(urlsplit(url).netloc)
        return super().request(method, url, *args, **kwargs)


@pytest.mark.parametrize("domain", [
    "orgname.visualstudio.com",  # no scheme
    "http://dev.azure.com/orgname/",  # not https
    "https://evil.example/orgname/",  # a host that is not Azure DevOps and not allow-listed
    "https://dev.azure.com.evil.example/orgname/",
    "https://user@dev.azure.com/orgname/",
    "https://dev.azure.com/orgname/../other/",
    "https://169.254.169.254/latest/",
])
def test_an_untrusted_domain_name_is_refused_before_any_credential_leaves(ado: Ado, domain: str) -> None:
    spy = Spy()
    with pytest.raises(InvalidInput) as caught:
        install.install(compose.build(session=spy), ado.account_id, ado.body(domain_name=domain))
    assert caught.value.status == 422 and caught.value.field == "domain_name"
    assert spy.hosts == [], "nothing may be sent anywhere"
    assert partition_rows(ado.account_id) == []


def test_a_domain_of_another_organization_is_refused(svc: Services, ado: Ado, uid: str) -> None:
    other = ado.sandbox.add_organization(f"other{uid}", f"acct-other-{uid}")
    assert other != ado.account_id
    # A credential that works there: only the organization id tells the two apart.
    body = ado.body(domain_name=ado.sandbox.instance_url(f"other{uid}"),
                    identity={"kind": "pat", "access_token": ado.sandbox.add_pat(f"other{uid}")})

    with pytest.raises(Unprocessable) as caught:
        install.install(svc, ado.account_id, body)

    assert caught.value.field == "domain_name" and ado.account_id in caught.value.message
    assert partition_rows(ado.account_id) == []
    assert ado.hooks() == [] and list(ado.sandbox.subscriptions(f"other{uid}")) == []


def test_a_refused_hook_creation_is_explained_and_leaves_nothing(svc: Services, ado: Ado) -> None:
    bad = ado.body(domain_name=ado.sandbox.instance_url(ado.name),
                   identity={"kind": "pat", "access_token": "not-a-known-pat"})

    with pytest.raises(Unprocessable) as caught:
        install.install(svc, ado.account_id, bad)

    assert "third-party application access via OAuth" in caught.value.message
    assert "project administrator" in caught.value.message
    assert "not-a-known-pat" not in caught.value.message
    assert caught.value.status == 422
    assert partition_rows(ado.account_id) == []
    assert ado.hooks() == []

    install.install(svc, ado.account_id, ado.body())
    assert len(ado.hooks()) == 1
    assert svc.store.integrations.get(ado.account_id) is not None


def test_a_403_on_hook_creation_leaves_nothing(svc: Services, ado: Ado) -> None:
    refusing = RefusingHookCreation()

    with pytest.raises(Unprocessable, match="Please ensure"):
        install.install(compose.build(session=refusing), ado.account_id, ado.body())

    assert refusing.refused == 1
    assert partition_rows(ado.account_id) == []
    assert ado.hooks() == []

    install.install(svc, ado.account_id, ado.body())
    assert svc.store.integrations.get(ado.account_id) is not None


def test_a_reinstall_refused_by_ado_keeps_the_working_integration(svc: Services, ado: Ado) -> None:
    install.install(svc, ado.account_id, ado.body())
    before = svc.store.integrations.load_identity(ado.account_id)
    [hook] = ado.hooks()
    ado.sandbox.set_subscription_status(ado.name, hook["id"], "disabledBySystem")

    with pytest.raises(Unprocessable):
        install.install(svc, ado.account_id, ado.body(identity={"kind": "pat", "access_token": "revoked"}))

    after = svc.store.integrations.load_identity(ado.account_id)
    assert before is not None and after is not None and after[0].access_token == ado.pat
    integration = svc.store.integrations.get(ado.account_id)
    assert integration is not None and integration.subscription_id == hook["id"]


def test_install_without_webhook_url_writes_nothing(svc: Services, ado: Ado, env: pytest.MonkeyPatch) -> None:
    env.delenv("WEBHOOK_URL")
    config.reset()
    ado.sandbox.reset_calls()

    with pytest.raises(ConfigError, match="WEBHOOK_URL is not set") as caught:
        install.install(svc, ado.account_id, ado.body())
    assert caught.value.status == 500  # a server setting is missing: not the caller's fault

    assert partition_rows(ado.account_id) == []
    assert not [c for c in ado.sandbox.calls if ado.name in c["path"]]


def test_post_install_queues_one_migration_per_legacy_repository(recording_svc: Services, ado: Ado) -> None:
    org = ado.org_id
    repositories = recording_svc.store.repositories
    repositories.put(Repository(org, "legacy", "ProjectA/one", "visualstudio", "1"))
    repositories.put(Repository(org, "vsts", "ProjectA/two", "integrations:vsts", "2"))
    repositories.put(Repository(org, "done", "ProjectA/three", "integrations:vsts", "3", integration_id="x"))
    repositories.put(Repository(org, "github", "acme/four", "github", "4"))

    install.install(recording_svc, ado.account_id, ado.body())

    queued = recording_svc.send.messages(migration.QUEUE)  # type: ignore[attr-defined]
    assert sorted(m["repo_id"] for m in queued) == ["legacy", "vsts"]
    assert {(m["integration_id"], m["organization_id"]) for m in queued} == {(ado.account_id, org)}


def test_oauth_identity_is_stored_with_its_expiry(svc: Services, ado: Ado) -> None:
    token = ado.sandbox.issue_token(ado.name)
    identity = {"kind": "oauth", "access_token": token["access_token"], "refresh_token": token["refresh_token"],
                "expires_at": "2031-01-02T03:04:05Z"}

    install.install(svc, ado.account_id, ado.body(identity=identity))

    loaded = svc.store.integrations.load_identity(ado.account_id)
    assert loaded is not None
    assert loaded[0].kind == "oauth" and loaded[0].refresh_token == token["refresh_token"]
    assert loaded[0].expires_at == datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("change", "field"), [
    ({"account_name": ""}, "account_name"),
    ({"organization_id": None}, "organization_id"),
    ({"identity": None}, "identity"),
    ({"identity": {"kind": "ssh", "access_token": "x"}}, "identity.kind"),
    ({"identity": {"kind": "pat"}}, "identity.access_token"),
    ({"identity": {"kind": "pat", "access_token": "x", "refresh_token": "y"}}, "identity.refresh_token"),
    ({"identity": {"kind": "oauth", "access_token": "x", "expires_at": "soon"}}, "identity.expires_at"),
    ({"config": {"sync_status_forward": {"p1": {"on_resolve": "", "on_unresolve": "Active"}}}},
     "sync_status_forward"),
    ({"config": {"sync_comments": "yes"}}, "sync_comments"),
    ({"config": {"sync_everything": True}}, "sync_everything"),
])
def test_invalid_bodies_are_rejected_before_anything_happens(
        svc: Services, ado: Ado, change: dict[str, Any], field: str) -> None:
    ado.sandbox.reset_calls()

    with pytest.raises(InvalidInput) as caught:
        install.install(svc, ado.account_id, ado.body(**change))
    assert caught.value.status == 422
    assert caught.value.field == field
    assert partition_rows(ado.account_id) == []
    assert not [c for c in ado.sandbox.calls if ado.name in c["path"]]


def test_org_config_is_validated_and_replaced(svc: Services, ado: Ado) -> None:
    settings = {"sync_status_forward": {ado.project_id: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
                "sync_status_reverse": True, "sync_reverse_assignment": True,
                "inbound_status": {ado.project_id: {"resolve": ["Closed"], "unresolve": ["New"]}}}
    install.install(svc, ado.account_id, ado.body(config=settings))
    link = svc.store.integrations.get_org_link(ado.account_id, ado.org_id)
    assert link is not None and link.flag("sync_status_reverse") and link.flag("sync_status_forward")
    assert link.config["inbound_status"][ado.project_id]["resolve"] == ["Closed"]

    with pytest.raises(InvalidInput, match=r"Resolve and unresolve status are required\."):
        install.put_org_config(svc, ado.account_id, ado.org_id,
                               {"sync_status_forward": {ado.project_id: {"on_resolve": "Resolved"}}})
    reply = install.put_org_config(svc, ado.account_id, ado.org_id, {"sync_status_forward": {}, "sync_comments": True})

    assert reply.body["config"]["sync_comments"] is True
    link = svc.store.integrations.get_org_link(ado.account_id, ado.org_id)
    assert link is not None and not link.flag("sync_status_forward") and not link.flag("sync_status_reverse")
    assert link.flag("sync_comments")
    # A re-install without config keeps the link's config.
    install.install(svc, ado.account_id, ado.body())
    link = svc.store.integrations.get_org_link(ado.account_id, ado.org_id)
    assert link is not None and link.flag("sync_comments")
    with pytest.raises(NotFound):
        install.put_org_config(svc, ado.account_id, "unknown-org", {})


def test_view_of_an_unknown_integration_is_404(svc: Services, uid: str) -> None:
    with pytest.raises(NotFound):
        install.integration_view(svc, f"nobody-{uid}")


def test_ado_repositories_lists_project_and_name(svc: Services, ado: Ado) -> None:
    repo_id = ado.sandbox.add_repository(ado.name, "ProjectA", "cool-service")
    install.install(svc, ado.account_id, ado.body())

    reply = install.ado_repositories(svc, ado.account_id)

    assert reply.body == [{"name": "ProjectA/cool-service", "identifier": repo_id}]
    with pytest.raises(NotFound):
        install.ado_repositories(svc, f"nobody-{ado.account_id}")


def test_ado_repositories_errors_are_clear(svc: Services, ado: Ado) -> None:
    install.install(svc, ado.account_id, ado.body())
    ado.sandbox.set_git_unauthorized(ado.name)
    try:
        with pytest.raises(AdoError) as caught:
            install.ado_repositories(svc, ado.account_id)
    finally:
        ado.sandbox.set_git_unauthorized(ado.name, False)
    assert caught.value.status == 502
    assert "Could not list the repositories" in caught.value.message


def test_ado_repositories_when_token_refresh_is_refused(svc: Services, ado: Ado) -> None:
    install.install(svc, ado.account_id, ado.body())
    svc.store.integrations.save_identity(ado.account_id, Identity(
        kind="oauth", access_token="expired", refresh_token="refused", expires_at=1.0))

    with pytest.raises(AdoError) as caught:
        install.ado_repositories(svc, ado.account_id)

    assert caught.value.status == 502
    assert "Token refresh was refused" in caught.value.message


def test_ado_client_repairs_and_saves_a_malformed_domain(svc: Services, ado: Ado) -> None:
    install.install(svc, ado.account_id, ado.body())
    svc.store.integrations.update(ado.account_id, lambda i: replace(i, domain_name="x.visualstudio.com"))
    integration = svc.store.integrations.get(ado.account_id)
    assert integration is not None

    client = svc.ado(integration)

    assert client.base_url == ado.sandbox.instance_url(ado.name)
    saved = svc.store.integrations.get(ado.account_id)
    assert saved is not None and saved.domain_name == ado.sandbox.instance_url(ado.name)
