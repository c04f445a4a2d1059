"""The last work item choice per (integration, organization, tracker project), on Azurite."""

from __future__ import annotations

import pytest

from shared.adapters.choices import ChoiceStore
from shared.adapters.integrations import IntegrationStore
from shared.compose import token_cipher
from shared.core.models import Integration, OrgLink

pytestmark = pytest.mark.usefixtures("azurite")


def test_remember_get_and_forget_per_organization(uid: str) -> None:
    store = ChoiceStore()
    store.remember(uid, "org-a", "p1", {"project": "P", "work_item_type": "Bug", "basis": "x"})
    store.remember(uid, "org-a", "p1", {"project": "P", "work_item_type": "Task", "basis": "x"})
    store.remember(uid, "org-a", "p2", {"project": "Q"})
    store.remember(uid, "org-b", "p1", {"project": "R"})

    assert store.get(uid, "org-a", "p1") == {"project": "P", "work_item_type": "Task", "basis": "x"}
    assert store.get(uid, "org-a", "p3") is None
    assert store.forget(uid, "org-a") == 2
    assert store.get(uid, "org-a", "p2") is None and store.get(uid, "org-b", "p1") == {"project": "R"}


def test_choice_rows_stay_out_of_the_integration_reads(uid: str) -> None:
    integrations = IntegrationStore(token_cipher)
    integrations.save(Integration(account_id=uid, account_name="acme", domain_name="https://acme.example/"))
    integrations.save_org_link(OrgLink(account_id=uid, org_id="org-a"))
    ChoiceStore().remember(uid, "org-a", "p1", {"project": "P"})

    state, groups = integrations.read_for_work_item(uid, "1")
    assert [link.org_id for link in state.links] == ["org-a"] and groups == []
    assert [link.org_id for _, link in integrations.iter_org_links() if link.account_id == uid] == ["org-a"]
