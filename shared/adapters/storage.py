"""Azure Storage clients (tables and queues), built once per process, and storage error mapping.

Accepts both forms of the `AzureWebJobsStorage` setting: a connection string (Azurite, local) and
the identity-based `AzureWebJobsStorage__tableServiceUri` / `__queueServiceUri` settings (Azure,
through `DefaultAzureCredential`). This is the one place that turns azure-core transport and
service errors into `StorageUnavailable`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Iterator
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64EncodePolicy

from shared.config import Settings, settings
from shared.core.errors import InvalidInput, StorageUnavailable

# Fail fast when storage is down: the webhook answers 503 and ADO retries later.
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5, "read_timeout": 20}
MAX_VISIBILITY = 7 * 24 * 3600 - 1  # seconds; Azure Storage queues refuse longer
_lock = threading.Lock()
_known_tables: set[tuple[int, str]] = set()
_tables: dict[tuple[int, str], TableClient] = {}
_queues: dict[tuple[int, str], QueueClient] = {}
_known_queues: set[tuple[int, str]] = set()


def _credential(config: Settings) -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=config.storage_client_id)


@functools.cache
def _table_service(config: Settings) -> TableServiceClient:
    if config.storage_connection:
        return TableServiceClient.from_connection_string(config.storage_connection, **_CLIENT_OPTIONS)
    assert config.storage_table_uri is not None
    return TableServiceClient(
        endpoint=config.storage_table_uri, credential=_credential(config), **_CLIENT_OPTIONS
    )


@functools.cache
def _queue_service(config: Settings) -> QueueServiceClient:
    if config.storage_connection:
        return QueueServiceClient.from_connection_string(
            config.storage_connection, message_encode_policy=TextBase64EncodePolicy(), **_CLIENT_OPTIONS
        )
    if not config.storage_queue_uri:
        raise StorageUnavailable("Setting AzureWebJobsStorage__queueServiceUri is required for queues")
    return QueueServiceClient(
        account_url=config.storage_queue_uri,
        credential=_credential(config),
        message_encode_policy=TextBase64EncodePolicy(),
        **_CLIENT_OPTIONS,
    )


def table(name: str) -> TableClient:
    """The client of table `name` (one per process), the table created in storage on first use.

    Clients are built once and shared: building one relinks the service's shared pipeline policies,
    which races with requests other threads are sending through them.
    """
    service = _table_service(settings())
    key = (id(service), name)
    with _lock:
        client = _tables.get(key)
        if client is None:
            client = _tables[key] = service.get_table_client(name)
    if key not in _known_tables:
        with translated(), contextlib.suppress(ResourceExistsError):
            service.create_table(name)
        with _lock:
            _known_tables.add(key)
    return client


def queue(name: str) -> QueueClient:
    """The client of queue `name` (one per process; base64 message encoding, as the Functions host expects)."""
    service = _queue_service(settings())
    key = (id(service), name)
    with _lock:
        client = _queues.get(key)
        if client is None:
            client = _queues[key] = service.get_queue_client(name, message_encode_policy=TextBase64EncodePolicy())
    if key not in _known_queues:
        with translated(), contextlib.suppress(ResourceExistsError):
            client.create_queue()
        with _lock:
            _known_queues.add(key)
    return client


def send(queue_name: str, message: dict[str, Any], /, *, delay: float | None = None) -> None:
    """Put one JSON message on a queue, invisible for `delay` seconds (1 s to 7 days) when given."""
    text = json.dumps(message, separators=(",", ":"))
    visibility = min(MAX_VISIBILITY, max(1, round(delay))) if delay else None
    with translated():
        queue(queue_name).send_message(text, visibility_timeout=visibility)


_TOO_LARGE_OR_INVALID = {"PropertyValueTooLarge", "EntityTooLarge", "RequestBodyTooLarge", "InvalidInput",
                         "OutOfRangeInput", "PropertyNameTooLong", "TooManyProperties", "InvalidValueType",
                         "KeyValueTooLarge", "InvalidDuplicateRow", "RequestEntityTooLarge"}


def _error_code(error: HttpResponseError) -> str:
    code: Any = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "")


def ping() -> None:
    """Raise StorageUnavailable unless table storage answers."""
    with translated():
        next(iter(_table_service(settings()).list_tables(results_per_page=1).by_page()), None)


def reset() -> None:
    """Forget cached clients (after settings changed)."""
    _table_service.cache_clear()
    _queue_service.cache_clear()
    with _lock:
        _known_tables.clear()
        _known_queues.clear()
        _tables.clear()
        _queues.clear()


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Map transport failures and 5xx/408/429 answers of storage to StorageUnavailable."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as error:
        raise StorageUnavailable(f"Storage did not answer: {type(error).__name__}") from error
    except ClientAuthenticationError as error:
        raise StorageUnavailable("Storage refused the credential") from error
    except HttpResponseError as error:
        status = error.status_code or 0
        if status >= 500 or status in (408, 429):
            raise StorageUnavailable(f"Storage answered {status}") from error
        if status in (400, 413) and _error_code(error) in _TOO_LARGE_OR_INVALID:
            raise InvalidInput("A value is too large or not valid for storage", status=422) from error
        raise
