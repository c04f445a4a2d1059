"""Users of an Azure DevOps Server collection, for assignee sync in both directions.

Azure DevOps Server has no graph users API and its identities are Windows domain accounts: a
service hook reports an assignee as `Name <DOMAIN\\user>`, and identity fields take that account.
The collection's identities (IMS) API answers both questions the sync asks:
- to assign a work item to a tracker user: which account has one of the user's e-mails
  (`searchFilter=MailAddress`); the account is what the push writes;
- to assign a group from a delivery: which e-mail the reported account has (`searchFilter=AccountName`),
  matched against the tracker users' verified e-mails.
Answers (found or not) are cached per integration. An account without an e-mail cannot be matched:
the delivery then records "assignee not synced" with the reason.
https://learn.microsoft.com/rest/api/azure/devops/ims/identities/read-identities?view=azure-devops-server-rest-7.0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.adapters.cache import CacheStore
from shared.core.webhook import account_of

USER_TTL = 3600.0
NO_USER_TTL = 300.0
_EMAIL = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")
Client = Callable[[], AdoClient]


def _property(identity: dict[str, Any], name: str) -> str | None:
    properties = identity.get("properties")
    entry = properties.get(name) if isinstance(properties, dict) else None
    value = entry.get("$value") if isinstance(entry, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def account_name(identity: dict[str, Any]) -> str | None:
    """`DOMAIN\\user` of an identity (Server keeps the domain and the account name in separate properties)."""
    account, domain = _property(identity, "Account"), _property(identity, "Domain")
    if account and "\\" not in account and domain:
        account = f"{domain}\\{account}"
    return account_of(account) if account else None


def mail_of(identity: dict[str, Any]) -> str | None:
    mail = _property(identity, "Mail")
    return mail.lower() if mail and _EMAIL.match(mail) else None


def _users(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in found if isinstance(i, dict) and not i.get("isContainer") and i.get("isActive", True)]


def find_user(client: Client, cache: CacheStore, account_id: str, emails: Iterable[str]) -> dict[str, Any] | None:
    """The collection user with one of `emails`: `{"principalName": "DOMAIN\\user", "displayName"}`, or None."""
    for email in sorted({e.strip().lower() for e in emails if e and e.strip()}):
        key = f"server_user|{email}"
        cached = cache.get(account_id, key)
        if cached is None:
            matches = [i for i in _users(client().find_identities("MailAddress", email)) if mail_of(i) == email]
            account = next((name for name in map(account_name, matches) if name), None)
            shown = next((i.get("providerDisplayName") for i in matches if account_name(i) == account), None)
            cached = {"found": True, "user": {"principalName": account, "displayName": shown}} if account \
                else {"found": False}
            cache.put(account_id, key, cached, ttl=USER_TTL if account else NO_USER_TTL)
        if isinstance(cached, dict) and cached.get("found"):
            return dict(cached["user"])
    return None


def email_of_account(client: Client, cache: CacheStore, account_id: str, account: str) -> str | None:
    """The e-mail of domain account `account` (`domain\\user`, any case), or None when it has none."""
    key = f"server_account|{account.lower()}"
    cached = cache.get(account_id, key)
    if isinstance(cached, dict):
        return cached.get("email")
    found = [i for i in _users(client().find_identities("AccountName", account))
             if (account_name(i) or "").lower() == account.lower()]
    email = next((mail for mail in map(mail_of, found) if mail), None)
    cache.put(account_id, key, {"email": email}, ttl=USER_TTL if email else NO_USER_TTL)
    return email
