"""Integrations in Table Storage: the integration, its identity, its organization links and work item index.

One partition per Azure DevOps organization (PartitionKey = account id) in table `Integrations`:

| RowKey                          | holds                                        |
|---------------------------------|----------------------------------------------|
| `integration`                   | the integration (subscription, secret hash)  |
| `identity`                      | its credential (never returned by the API)   |

The identity row of an `oauth` or `pat` identity holds its tokens sealed; that of a
`managed_identity` or `service_principal` holds only the non-secret description (client and tenant
ids, Key Vault references) in `entra`, and no token at all.
| `org|<org id>`                  | a tracker organization's link and config     |
| `wi|<work item id>|<org>|<group>` | the groups linked to a work item           |
| `event|<event id>`              | an integration event waiting for the relay   |

A webhook delivery reads the integration, its organization links and the groups linked to the
work item in one single-partition query (`read_for_work_item`); the kickoff streams the
integration and link rows of every partition, page by page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from azure.data.tables import TableEntity

from shared.adapters import outbox, tables
from shared.adapters.cipher import Cipher, is_envelope
from shared.core.errors import ConfigError, IdentityInvalid, InvalidInput
from shared.core.events import Event
from shared.core.identities import KINDS as ENTRA_KINDS
from shared.core.identities import parse_entra_identity
from shared.core.keys import check_id, join
from shared.core.models import Identity, Integration, IntegrationState, OrgLink

TABLE = "Integrations"
RK_INTEGRATION = "integration"
RK_IDENTITY = "identity"
ORG_PREFIX = "org|"
INDEX_PREFIX = "wi|"
SCAN_FIELDS = ["PartitionKey", "RowKey", "status", "subscription_id", "last_checked", "account_name",
               "domain_name", "deployment"]


def _integration_entity(item: Integration) -> dict[str, Any]:
    return {
        "PartitionKey": item.account_id,
        "RowKey": RK_INTEGRATION,
        "account_name": item.account_name,
        "domain_name": item.domain_name,
        "status": item.status,
        "subscription_id": item.subscription_id,
        "secret_hash": item.secret_hash,
        "subscription_status": item.subscription_status,
        "last_checked": item.last_checked,
        "last_delivery": item.last_delivery,
        "problem": item.problem,
        "last_reconciled": item.last_reconciled,
        "repaired": item.repaired,
        "deployment": item.deployment,
        "overlap_secrets": tables.dumps(item.overlap_secrets) if item.overlap_secrets else None,
        "retired_hooks": tables.dumps(item.retired_hooks) if item.retired_hooks else None,
        "comment_subscription_id": item.comment_subscription_id,
        "comment_secret_hash": item.comment_secret_hash,
        "comment_subscription_status": item.comment_subscription_status,
    }


def _integration(entity: TableEntity) -> Integration:
    return Integration(
        account_id=entity["PartitionKey"],
        account_name=entity.get("account_name", ""),
        domain_name=entity.get("domain_name", ""),
        status=entity.get("status", "active"),
        subscription_id=entity.get("subscription_id"),
        secret_hash=entity.get("secret_hash"),
        subscription_status=entity.get("subscription_status"),
        last_checked=entity.get("last_checked"),
        last_delivery=entity.get("last_delivery"),
        problem=entity.get("problem"),
        last_reconciled=entity.get("last_reconciled"),
        repaired=int(entity.get("repaired") or 0),
        deployment=entity.get("deployment") or "",
        overlap_secrets=_times(entity.get("overlap_secrets")),
        retired_hooks=_times(entity.get("retired_hooks")),
        comment_subscription_id=entity.get("comment_subscription_id"),
        comment_secret_hash=entity.get("comment_secret_hash"),
        comment_subscription_status=entity.get("comment_subscription_status"),
    )


def _times(text: Any) -> dict[str, float]:
    """A stored `{text: unix seconds}` map; anything malformed reads as empty."""
    try:
        value = tables.loads(text, {})
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {h: float(until) for h, until in value.items()
            if isinstance(h, str) and isinstance(until, int | float) and not isinstance(until, bool)}


def _org_link_entity(link: OrgLink) -> dict[str, Any]:
    return {"PartitionKey": link.account_id, "RowKey": ORG_PREFIX + link.org_id, "status": link.status,
            "config": tables.dumps(link.config)}


def _org_link(entity: TableEntity) -> OrgLink:
    return OrgLink(account_id=entity["PartitionKey"], org_id=entity["RowKey"][len(ORG_PREFIX):],
                   status=entity.get("status", "active"), config=tables.loads(entity.get("config"), {}))


SECRET_FIELDS = ("access_token", "refresh_token")


def _identity_context(account_id: str) -> str:
    """What a sealed identity is bound to: it opens only on this integration's identity row."""
    return f"{account_id}/ado-identity"


def _identity_entity(account_id: str, identity: Identity, cipher: Cipher) -> dict[str, Any]:
    if identity.kind in ENTRA_KINDS:
        # Nothing secret to seal: the description only (tokens are fetched at run time, never stored).
        return {"PartitionKey": account_id, "RowKey": RK_IDENTITY, "kind": identity.kind,
                "entra": json.dumps(identity.entra.to_dict() if identity.entra else {}),
                "status": identity.status, "problem": identity.problem}
    secrets = {name: getattr(identity, name) for name in SECRET_FIELDS}
    return {
        "PartitionKey": account_id,
        "RowKey": RK_IDENTITY,
        "kind": identity.kind,
        "sealed": cipher.seal(_identity_context(account_id), json.dumps(secrets).encode()),
        "expires_at": identity.expires_at,
        "status": identity.status,
        "problem": identity.problem,
    }


def _identity_secrets(entity: TableEntity, cipher: Cipher) -> dict[str, Any]:
    """The tokens of an identity row: sealed, or (rows written before encryption) plaintext."""
    sealed = entity.get("sealed")
    if isinstance(sealed, str) and is_envelope(sealed):
        opened = json.loads(cipher.open(_identity_context(entity["PartitionKey"]), sealed))
        return opened if isinstance(opened, dict) else {}
    return {name: entity.get(name) for name in SECRET_FIELDS}


def _entra_identity(entity: TableEntity) -> Identity:
    """A managed identity or service principal row; an unreadable description makes it invalid."""
    kind = entity["kind"]
    try:
        stored = json.loads(entity.get("entra") or "{}")
        entra = parse_entra_identity({**stored, "kind": kind} if isinstance(stored, dict) else {})
    except (InvalidInput, ValueError):
        return Identity(kind=kind, access_token="", status="invalid",
                        problem="The stored identity description is unreadable; install the integration again.")
    return Identity(kind=entra.kind, access_token="", status=entity.get("status", "valid"),
                    problem=entity.get("problem"), entra=entra)


def _legacy_identity(entity: TableEntity) -> Identity:
    """An identity row written before encryption (tokens in plaintext columns)."""
    return Identity(kind=entity.get("kind", "oauth"), access_token=entity.get("access_token") or "",
                    refresh_token=entity.get("refresh_token"), expires_at=entity.get("expires_at"),
                    status=entity.get("status", "valid"), problem=entity.get("problem"))


@dataclass
class Resealed:
    """What `rewrap_identities` did: rows re-sealed, rows already under the current key, rows that
    do not open (their account ids; such an integration must be re-installed)."""

    resealed: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


def _index_row(key: str, org_id: str, group_id: str) -> str:
    return join("wi", key, org_id, group_id)


class IntegrationStore:
    """Integrations, identities, organization links and the work item → groups index.

    Identity tokens are sealed with `cipher` (envelope encryption) before they are written.
    """

    def __init__(self, cipher: Callable[[], Cipher]) -> None:
        self._cipher = cipher

    # -- integration and organization links ------------------------------------------------------

    def read(self, account_id: str) -> IntegrationState:
        """The integration and its organization links (one query; never the identity)."""
        check_id(account_id, "account_id")
        low, high = tables.prefix_range(ORG_PREFIX)
        rows = tables.query(TABLE, "PartitionKey eq @pk and (RowKey eq @integration or "
                            "(RowKey ge @low and RowKey lt @high ) )",
                            pk=account_id, integration=RK_INTEGRATION, low=low, high=high)
        return self._state(rows)[0]

    def read_for_work_item(self, account_id: str, key: str) -> tuple[IntegrationState, list[tuple[str, str]]]:
        """The integration, its organization links, and (org id, group id) of the groups linked to work
        item `key`, in one single-partition query."""
        check_id(account_id, "account_id")
        low, high = tables.prefix_range(ORG_PREFIX)
        wi_low, wi_high = tables.prefix_range(join("wi", key, ""))
        rows = tables.query(TABLE, "PartitionKey eq @pk and (RowKey eq @integration or "
                            "(RowKey ge @low and RowKey lt @high ) or (RowKey ge @wlow and RowKey lt @whigh ) )",
                            pk=account_id, integration=RK_INTEGRATION, low=low, high=high, wlow=wi_low,
                            whigh=wi_high)
        return self._state(rows)

    @staticmethod
    def _state(rows: Iterator[TableEntity]) -> tuple[IntegrationState, list[tuple[str, str]]]:
        state = IntegrationState(integration=None)
        groups: list[tuple[str, str]] = []
        for entity in rows:
            row = entity["RowKey"]
            if row == RK_INTEGRATION:
                state.integration = _integration(entity)
                state.etag = tables.etag(entity)
            elif row.startswith(ORG_PREFIX):
                state.links.append(_org_link(entity))
            elif row.startswith(INDEX_PREFIX):
                groups.append((entity["org_id"], entity["group_id"]))
        return state, groups

    def get(self, account_id: str) -> Integration | None:
        entity = tables.get(TABLE, check_id(account_id, "account_id"), RK_INTEGRATION)
        return _integration(entity) if entity else None

    def save(self, item: Integration) -> None:
        tables.upsert(TABLE, _integration_entity(item))

    def update(self, account_id: str, mutate: Callable[[Integration], Integration | None], *,
               tell: Callable[[Integration, Integration], list[Event]] | None = None) -> Integration | None:
        """Read-modify-write under the ETag; `mutate` returns None for "no change". None: no integration.

        `tell(old, new)` names the events the change makes; they are written to the integration's
        outbox (`shared.adapters.outbox`) in the same transaction as the integration row.
        """

        def attempt() -> Integration | None:
            entity = tables.get(TABLE, account_id, RK_INTEGRATION)
            if entity is None:
                return None
            current = _integration(entity)
            changed = mutate(current)
            if changed is None:
                return current
            told = tell(current, changed) if tell is not None else []
            if not told:
                tables.create_or_replace(TABLE, _integration_entity(changed), tables.etag(entity))
                return changed
            tables.transact(TABLE, [tables.write(_integration_entity(changed), tables.etag(entity)),
                                    *[("create", outbox.entity(account_id, event)) for event in told]])
            return changed

        return tables.optimistic(f"integration {account_id}", attempt)

    def save_org_link(self, link: OrgLink) -> None:
        tables.upsert(TABLE, _org_link_entity(link))

    def get_org_link(self, account_id: str, org_id: str) -> OrgLink | None:
        entity = tables.get(TABLE, account_id, ORG_PREFIX + org_id)
        return _org_link(entity) if entity else None

    def iter_org_links(self, after: tuple[str, str] | None = None, page_size: int = 1000
                       ) -> Iterator[tuple[Integration, OrgLink]]:
        """Every (integration, organization link), ordered by (account id, org id), after `after`.

        Streams page by page: one page and one integration in memory.
        """
        flt = "(RowKey eq @integration or (RowKey ge @low and RowKey lt @high ) )"
        low, high = tables.prefix_range(ORG_PREFIX)
        params: dict[str, str] = {"integration": RK_INTEGRATION, "low": low, "high": high}
        if after is not None:
            flt += " and PartitionKey ge @start"
            params["start"] = after[0]
        current: Integration | None = None
        for entity in tables.query(TABLE, flt, select=SCAN_FIELDS, page_size=page_size, params=params):
            if entity["RowKey"] == RK_INTEGRATION:
                current = _integration(entity)
                continue
            link = _org_link(entity)
            if current is None or current.account_id != link.account_id:
                continue  # a link without its integration row
            if after is not None and (link.account_id, link.org_id) <= after:
                continue
            yield current, link

    # -- identity (the `IdentityRepo` of the Azure DevOps auth) ----------------------------------

    def load_identity(self, account_id: str) -> tuple[Identity, str] | None:
        """The integration's identity and its ETag, or None."""
        entity = tables.get(TABLE, account_id, RK_IDENTITY)
        if entity is None:
            return None
        if entity.get("kind") in ENTRA_KINDS:
            return _entra_identity(entity), tables.etag(entity)
        secrets = _identity_secrets(entity, self._cipher())
        identity = Identity(
            kind=entity.get("kind", "oauth"),
            access_token=secrets.get("access_token") or "",
            refresh_token=secrets.get("refresh_token"),
            expires_at=entity.get("expires_at"),
            status=entity.get("status", "valid"),
            problem=entity.get("problem"),
        )
        return identity, tables.etag(entity)

    def save_identity(self, account_id: str, identity: Identity, etag: str | None = None) -> bool:
        """Store the identity. With `etag`, only if nobody wrote since; False when someone did."""
        entity = _identity_entity(account_id, identity, self._cipher())
        if etag is None:
            tables.upsert(TABLE, entity)
            return True
        try:
            tables.create_or_replace(TABLE, entity, etag)
        except tables.LOST_ERRORS:
            return False
        return True

    def delete_identity(self, account_id: str) -> None:
        """Forget the integration's credential (gone already: nothing to do)."""
        tables.delete(TABLE, check_id(account_id, "account_id"), RK_IDENTITY)

    def rewrap_identities(self) -> Resealed:
        """Re-seal every stored identity under the current key (after a key rotation).

        Each row is replaced under its ETag; a row written meanwhile is already under the current key
        (the next run counts it as current). Rows that do not open (tampered, or sealed with a key no
        longer configured) are left as they are and reported; Key Vault outages raise.
        """
        cipher = self._cipher()
        report = Resealed()
        for entity in tables.query(TABLE, "RowKey eq @rk", rk=RK_IDENTITY):
            if entity.get("kind") in ENTRA_KINDS:
                continue  # nothing sealed
            sealed = entity.get("sealed")
            account_id = entity["PartitionKey"]
            try:
                if isinstance(sealed, str) and is_envelope(sealed):
                    fresh = cipher.rewrap(_identity_context(account_id), sealed)
                    if fresh is None:
                        report.current += 1
                        continue
                    row = {**entity, "sealed": fresh}
                else:  # a row written before encryption: seal it now (the plaintext columns go)
                    row = _identity_entity(account_id, _legacy_identity(entity), cipher)
            except (IdentityInvalid, ConfigError):
                report.unreadable.append(account_id)
                continue
            try:
                tables.create_or_replace(TABLE, row, tables.etag(entity))
            except tables.LOST_ERRORS:
                continue
            report.resealed += 1
        return report

    # -- work item index -------------------------------------------------------------------------

    def index_link(self, account_id: str, key: str, org_id: str, group_id: str) -> None:
        tables.upsert(TABLE, {"PartitionKey": account_id, "RowKey": _index_row(key, org_id, group_id),
                              "org_id": org_id, "group_id": group_id})

    def unindex_link(self, account_id: str, key: str, org_id: str, group_id: str) -> None:
        """Remove a group from a work item's index (gone already: nothing to do)."""
        tables.delete(TABLE, account_id, _index_row(key, org_id, group_id))

    def groups_linked_to(self, account_id: str, key: str) -> list[tuple[str, str]]:
        return self.read_for_work_item(account_id, key)[1]

    def linked_work_items(self, account_id: str) -> dict[str, list[tuple[str, str]]]:
        """Every linked work item of the integration → (org id, group id) of its groups (one paged query)."""
        low, high = tables.prefix_range(INDEX_PREFIX)
        found: dict[str, list[tuple[str, str]]] = {}
        for row in tables.query(TABLE, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                                pk=account_id, low=low, high=high):
            key = row["RowKey"].split("|", 2)[1]
            found.setdefault(key, []).append((row["org_id"], row["group_id"]))
        return found
