"""The pull feed of tracker events and the tracker organizations' webhook settings.

Table `Events`, one partition per tracker organization:

| RowKey                  | holds                                                                 |
|-------------------------|-----------------------------------------------------------------------|
| `config`                | the organization's webhook URL and secret (sealed), and the endpoint that answered 410 |
| `seq`                   | the number of the newest feed entry                                   |
| `feed|<20-digit number>`| one event (its JSON payload), numbered in the order it reached the feed |
| `id|<event id>`         | the number of that event's entry                                      |

Entries are numbered, not keyed by event id: ids are made before their change commits, and the
relay of one group can lag behind another's (a retried message, a sweep), so an event with an older
id can reach the feed after a newer one. A reader whose cursor had passed that id would never see it.
A number is taken when the entry is written, in one transaction with the `seq` row (under its ETag)
and the `id|` row, so entries appear strictly in the order of their numbers, each event once: a
duplicate append meets its `id|` row and is left out. Appends to one organization's feed are
serialised within a process (they would only lose the `seq` race to each other); across processes
the ETag decides and the loser tries again. Nothing removes entries: a cursor (a row key)
stays valid for as long as the table is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from azure.data.tables import TableEntity

from shared.adapters import tables
from shared.adapters.cipher import Cipher
from shared.core import event_json
from shared.core.events import Event
from shared.core.keys import join

TABLE = "Events"
RK_CONFIG = "config"
RK_SEQ = "seq"
FEED = "feed"
ID = "id"
APPEND_CHUNK = 40  # events per transaction: 1 + 2 rows each, within the 100-operation limit


@dataclass(frozen=True)
class OrgConfig:
    """A tracker organization's own endpoint (None: use the settings) and the endpoint that answered 410.

    `gone` is the fingerprint of the endpoint that answered 410 Gone; nothing is sent to it until
    the organization's endpoint is configured again.
    """

    url: str | None = None
    sealed_secret: str | None = None
    gone: str | None = None

    def __repr__(self) -> str:
        return f"OrgConfig(url_set={self.url is not None}, secret_set={self.sealed_secret is not None})"


@dataclass(frozen=True)
class OrgHead:
    """What the relay reads of an organization before appending and delivering (one query)."""

    config: OrgConfig
    seq: int = 0
    seq_etag: str | None = None
    config_etag: str | None = None


def feed_key(number: int) -> str:
    return join(FEED, f"{number:020d}")


def _secret_context(org_id: str) -> str:
    """What a sealed webhook secret is bound to: it opens only on this organization's config row."""
    return f"{org_id}/tracker-webhook-secret"


class FeedStore:
    """The organization feeds, and the tracker organizations' webhook settings (secrets sealed with `cipher`)."""

    def __init__(self, cipher: Callable[[], Cipher]) -> None:
        self._cipher = cipher
        self._guard = threading.Lock()
        self._appending: dict[str, tuple[threading.Lock, int]] = {}
        self._written: dict[str, tuple[int, str]] = {}  # per organization: the `seq` this process last wrote

    # -- config ----------------------------------------------------------------------------------

    def head(self, org_id: str) -> OrgHead:
        """The organization's config and newest entry number, in one query."""
        rows = tables.query(TABLE, "PartitionKey eq @pk and (RowKey eq @config or RowKey eq @seq )",
                            pk=org_id, config=RK_CONFIG, seq=RK_SEQ)
        head = OrgHead(config=OrgConfig())
        for row in rows:
            if row["RowKey"] == RK_SEQ:
                head = OrgHead(head.config, int(row.get("seq") or 0), tables.etag(row), head.config_etag)
            else:
                head = OrgHead(self._config(row), head.seq, head.seq_etag, tables.etag(row))
        return head

    @staticmethod
    def _config(row: TableEntity) -> OrgConfig:
        return OrgConfig(url=row.get("url") or None, sealed_secret=row.get("sealed_secret") or None,
                         gone=row.get("gone") or None)

    def config(self, org_id: str) -> OrgConfig:
        """The organization's webhook config (its secret still sealed)."""
        row = tables.get(TABLE, org_id, RK_CONFIG)
        return self._config(row) if row is not None else OrgConfig()

    def open_secret(self, org_id: str, config: OrgConfig) -> str | None:
        """The organization's webhook secret; IdentityInvalid or ConfigError when it does not open."""
        if config.sealed_secret is None:
            return None
        return self._cipher().open(_secret_context(org_id), config.sealed_secret).decode()

    def put_config(self, org_id: str, url: str | None, secret: str | None, *, keep_secret: bool) -> None:
        """Set the organization's endpoint (None: the settings'); `keep_secret` keeps the stored secret.

        Configuring clears the 410 mark, so delivery resumes.
        """

        def attempt() -> None:
            row = tables.get(TABLE, org_id, RK_CONFIG)
            sealed = row.get("sealed_secret") if keep_secret and row is not None else None
            if secret is not None:
                sealed = self._cipher().seal(_secret_context(org_id), secret.encode())
            entity = {"PartitionKey": org_id, "RowKey": RK_CONFIG, "url": url, "sealed_secret": sealed,
                      "gone": None}
            tables.create_or_replace(TABLE, entity, tables.etag(row) if row is not None else None)

        tables.optimistic(f"organization {org_id} config", attempt)

    def mark_gone(self, org_id: str, fingerprint: str) -> None:
        """Remember that the endpoint with `fingerprint` answered 410 Gone (kept until reconfigured)."""

        def attempt() -> None:
            row = tables.get(TABLE, org_id, RK_CONFIG)
            entity: dict[str, Any] = dict(row) if row is not None else {"PartitionKey": org_id, "RowKey": RK_CONFIG}
            entity["gone"] = fingerprint
            tables.create_or_replace(TABLE, entity, tables.etag(row) if row is not None else None)

        tables.optimistic(f"organization {org_id} config", attempt)

    # -- feed ------------------------------------------------------------------------------------

    def append(self, org_id: str, events: list[Event], head: OrgHead | None = None) -> int:
        """Append the events not in the feed yet, in the given order; how many were new.

        The first attempt trusts `head` (the `seq` row just read) and that none is there yet; after
        a lost race it reads again and leaves out the events whose `id|` row exists.
        """
        added = 0
        with self._org_lock(org_id):
            for start in range(0, len(events), APPEND_CHUNK):
                added += self._append(org_id, events[start:start + APPEND_CHUNK], head)
                head = None
        return added

    @contextmanager
    def _org_lock(self, org_id: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._appending.get(org_id, (threading.Lock(), 0))
            self._appending[org_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._appending[org_id]
                if users == 1:
                    del self._appending[org_id]
                else:
                    self._appending[org_id] = (lock, users - 1)

    def _append(self, org_id: str, chunk: list[Event], head: OrgHead | None) -> int:
        """One transaction: `seq` and two rows per event. The first attempt takes the newest `seq` this
        process knows (the one just read, or the one it last wrote); after a lost race it reads `seq`
        again, and after a duplicate (an `id|` row that exists) it leaves out the events already there."""
        attempts = [0]
        duplicate = [False]

        def attempt() -> int:
            attempts[0] += 1
            known = [(head.seq, head.seq_etag)] if head is not None else []
            known += [self._written[org_id]] if org_id in self._written else []
            if attempts[0] == 1 and known:
                seq, etag = max(known, key=lambda pair: pair[0])
            else:
                row = tables.get(TABLE, org_id, RK_SEQ)
                seq, etag = (int(row.get("seq") or 0), tables.etag(row)) if row else (0, None)
            todo = chunk
            if duplicate[0]:
                todo = [e for e in chunk if tables.get(TABLE, org_id, join(ID, e.id)) is None]
            if not todo:
                return 0
            last = seq + len(todo)
            ops: list[tables.Op] = [tables.write({"PartitionKey": org_id, "RowKey": RK_SEQ, "seq": last}, etag)]
            for number, event in enumerate(todo, start=seq + 1):
                ops.append(("create", {"PartitionKey": org_id, "RowKey": feed_key(number), "event_id": event.id,
                                       "payload": event_json.to_json(event), "created": event.created}))
                ops.append(("create", {"PartitionKey": org_id, "RowKey": join(ID, event.id), "seq": number}))
            try:
                results = tables.transact(TABLE, ops)
            except tables.LostRace as lost:
                duplicate[0] = duplicate[0] or getattr(lost.__cause__, "status_code", None) == 409
                raise
            tag = results[0].get("etag") if results and isinstance(results[0], dict) else None
            if tag:
                self._written[org_id] = (last, str(tag))
            return len(todo)

        return tables.optimistic(f"organization {org_id} feed", attempt)

    def page(self, org_id: str, after: str | None, limit: int) -> list[tuple[str, Event]]:
        """Up to `limit` entries after row key `after` (None: from the first), oldest first, with their row keys."""
        low, high = tables.prefix_range(FEED + "|")
        rows = tables.query(TABLE, "PartitionKey eq @pk and RowKey gt @after and RowKey lt @high",
                            select=["RowKey", "payload"], page_size=limit, pk=org_id, after=after or low, high=high)
        found: list[tuple[str, Event]] = []
        for row in rows:
            found.append((row["RowKey"], event_json.from_json(row["payload"])))
            if len(found) >= limit:
                break
        return found

    def find(self, org_id: str, event_id: str) -> Event | None:
        """The event with `event_id` from the organization's feed (None: not there)."""
        index = tables.get(TABLE, org_id, join(ID, event_id))
        if index is None:
            return None
        row = tables.get(TABLE, org_id, feed_key(int(index.get("seq") or 0)))
        return event_json.from_json(row["payload"]) if row is not None else None
