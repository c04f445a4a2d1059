"""The bundle's state: one object per aggregate, over Azure Table Storage. Only models leave it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.adapters.cache import CacheStore
from shared.adapters.choices import ChoiceStore
from shared.adapters.cipher import Cipher
from shared.adapters.deliveries import DeliveryStore
from shared.adapters.feed import FeedStore
from shared.adapters.groups import GroupStore
from shared.adapters.integrations import IntegrationStore
from shared.adapters.outbox import OutboxStore
from shared.adapters.repositories import RepositoryStore
from shared.adapters.users import UserStore


@dataclass(frozen=True)
class Store:
    integrations: IntegrationStore
    groups: GroupStore
    users: UserStore
    repositories: RepositoryStore
    cache: CacheStore
    choices: ChoiceStore
    outbox: OutboxStore
    feed: FeedStore
    deliveries: DeliveryStore


def table_store(cipher: Callable[[], Cipher], clock: Callable[[], float] = time.time) -> Store:
    integrations = IntegrationStore(cipher)
    return Store(integrations=integrations, groups=GroupStore(integrations, clock), users=UserStore(),
                 repositories=RepositoryStore(), cache=CacheStore(clock), choices=ChoiceStore(),
                 outbox=OutboxStore(), feed=FeedStore(cipher), deliveries=DeliveryStore())
