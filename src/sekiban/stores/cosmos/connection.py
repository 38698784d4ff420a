"""Reaching a Cosmos DB account: settings, client, containers and connection errors.

`sekiban.stores.cosmos` holds the stores and their design; this module opens what they
use. Names and the key are checked before anything is sent. Missing containers are
created with an indexing policy that covers only the queried fields (payloads cost no
index writes), and `throughput` RU/s (manual, or the autoscale maximum) is provisioned
on the database, shared by its containers; policy and throughput apply only to what
this module creates. SDK failures to reach the server or to authenticate become
`StoreConnectionError` / `StoreAuthenticationError`, naming the endpoint and never the
key (the SDK sends only an HMAC signature made with it).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sekiban._extras import require_extra
from sekiban.errors import (
    ConfigurationError,
    StoreAuthenticationError,
    StoreConnectionError,
    StoreError,
)
from sekiban.stores.faults import fault

with require_extra("cosmos", "sekiban.stores.cosmos"):
    from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
    from azure.cosmos import PartitionKey, ThroughputProperties
    from azure.cosmos.aio import CosmosClient
    from azure.cosmos.exceptions import (
        CosmosClientTimeoutError,
        CosmosHttpResponseError,
        CosmosResourceExistsError,
        CosmosResourceNotFoundError,
    )

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")

EVENTS_INDEXING = {
    "indexingMode": "consistent",
    "includedPaths": [
        {"path": "/pk/?"},
        {"path": "/first_version/?"},
        {"path": "/last_version/?"},
        {"path": "/ordering_key/?"},
        {"path": "/command_key/?"},
    ],
    "excludedPaths": [{"path": "/*"}],
}
COMMAND_KEY_PATH = "/command_key"
EVENTS_UNIQUE_KEYS = {"uniqueKeys": [{"paths": [COMMAND_KEY_PATH]}]}
"""A commit's command key is unique within its stream's logical partition, checked by
the server in the create itself. Cosmos DB sets unique keys only when it creates a
container."""
SNAPSHOTS_INDEXING = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/version/?"}],
    "excludedPaths": [{"path": "/*"}],
}
PROJECTIONS_INDEXING = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/kind/?"}],
    "excludedPaths": [{"path": "/*"}],
}


@dataclass(frozen=True, slots=True)
class CosmosContainers:
    """An open client and the containers of one store (SDK proxies)."""

    client: Any
    database: Any
    events: Any
    snapshots: Any
    projections: Any
    endpoint: str


async def open_containers(
    *,
    endpoint: str,
    key: str,
    database: str,
    container_prefix: str,
    throughput: int | None,
    autoscale: bool,
    create: bool,
    client_options: Mapping[str, Any] | None,
) -> CosmosContainers:
    """A client on `endpoint` and the containers `<container_prefix>-events`,
    `-snapshots` and `-projections` of `database`, created if missing when `create`.
    Without `create`, a missing projections container is not refused here (stores made
    before projection stores work as they did); the projection store's requests fail.

    Raises `ConfigurationError` for bad names or a key that is not base64 (before
    connecting) and for missing containers without `create`; `StoreConnectionError` /
    `StoreAuthenticationError` when the server cannot be reached or refuses the key.
    """
    check_name("database", database)
    check_name("container_prefix", container_prefix)
    if not isinstance(endpoint, str) or not re.match(r"https?://", endpoint):
        raise ConfigurationError(f"Cosmos DB endpoint must be an http(s) URL, got {endpoint!r}")
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ConfigurationError(
            f"the key for Cosmos DB at {endpoint} is not base64 (use the account key)"
        ) from None
    options = dict(client_options or {})
    if endpoint.startswith("http://"):
        # A plain-HTTP server (the local one with --no-ssl) still advertises https
        # locations; real accounts are always https.
        options.setdefault("enable_endpoint_discovery", False)
    names = (f"{container_prefix}-events", f"{container_prefix}-snapshots")
    projections_name = f"{container_prefix}-projections"
    client = CosmosClient(endpoint, credential=key, **options)
    try:
        with translate_errors(endpoint):
            if create:
                offer: int | ThroughputProperties | None = throughput
                if throughput is not None and autoscale:
                    offer = ThroughputProperties(auto_scale_max_throughput=throughput)
                db = await client.create_database_if_not_exists(database, offer_throughput=offer)
                events = await _ensure_container(db, names[0], EVENTS_INDEXING, EVENTS_UNIQUE_KEYS)
                snapshots = await _ensure_container(db, names[1], SNAPSHOTS_INDEXING)
                projections = await _ensure_container(db, projections_name, PROJECTIONS_INDEXING)
            else:
                db = client.get_database_client(database)
                events, snapshots = (db.get_container_client(n) for n in names)
                projections = db.get_container_client(projections_name)
                for container, name in ((events, names[0]), (snapshots, names[1])):
                    try:
                        await container.read()
                    except CosmosResourceNotFoundError:
                        raise ConfigurationError(
                            f"container {name!r} of database {database!r} does not exist at "
                            f"{endpoint}; open with create=True to create it"
                        ) from None
            _check_unique_command_key(await events.read(), names[0], endpoint)
    except BaseException:
        await client.close()
        raise
    return CosmosContainers(client, db, events, snapshots, projections, endpoint)


async def _ensure_container(
    database: Any,
    name: str,
    indexing: dict[str, Any],
    unique_keys: dict[str, Any] | None = None,
) -> Any:
    try:
        return await database.create_container_if_not_exists(
            name,
            partition_key=PartitionKey(path="/pk"),
            indexing_policy=indexing,
            unique_key_policy=unique_keys,
        )
    except CosmosResourceExistsError:  # another process created it between read and create
        return database.get_container_client(name)


def _check_unique_command_key(properties: Mapping[str, Any], name: str, endpoint: str) -> None:
    """Refuse an events container without the unique key on command keys (one made
    before command ids): there a resent command could be appended twice."""
    policy = properties.get("uniqueKeyPolicy") or {}
    paths = [path for key in policy.get("uniqueKeys") or [] for path in key.get("paths") or []]
    if COMMAND_KEY_PATH not in paths:
        raise ConfigurationError(
            f"container {name!r} at {endpoint} has no unique key on {COMMAND_KEY_PATH}, "
            "which keeps each command id once per stream; Cosmos DB cannot add one to an "
            "existing container: use a new container_prefix and copy the commits into it "
            "(see docs/stores.md)"
        )


def parse_connection_string(connection_string: str) -> tuple[str, str]:
    """The endpoint and key of `AccountEndpoint=...;AccountKey=...;` (any case and order;
    other parts are ignored).

    Raises `ConfigurationError`, without echoing the string (it holds the key), when
    `AccountEndpoint` or `AccountKey` is missing.
    """
    parts: dict[str, str] = {}
    for part in connection_string.split(";"):
        name, separator, value = part.partition("=")  # the key's base64 may end in '='
        if separator and name.strip():
            parts[name.strip().lower()] = value.strip()
    endpoint, key = parts.get("accountendpoint"), parts.get("accountkey")
    if not endpoint or not key:
        missing = " and ".join(
            n for n, v in (("AccountEndpoint", endpoint), ("AccountKey", key)) if not v
        )
        raise ConfigurationError(
            f"Cosmos DB connection string has no {missing}; expected "
            "'AccountEndpoint=https://...;AccountKey=...;'"
        )
    return endpoint, key


def settings_from_env() -> dict[str, str]:
    """`endpoint`, `key` and maybe `database` from SEKIBAN_COSMOS_CONNECTION_STRING, or
    SEKIBAN_COSMOS_ENDPOINT and SEKIBAN_COSMOS_KEY, and SEKIBAN_COSMOS_DATABASE.

    Raises `ConfigurationError` naming the variable that is missing.
    """
    settings: dict[str, str] = {}
    connection_string = os.environ.get("SEKIBAN_COSMOS_CONNECTION_STRING")
    if connection_string:
        settings["endpoint"], settings["key"] = parse_connection_string(connection_string)
    else:
        for name, setting in (
            ("SEKIBAN_COSMOS_ENDPOINT", "endpoint"),
            ("SEKIBAN_COSMOS_KEY", "key"),
        ):
            value = os.environ.get(name)
            if not value:
                raise ConfigurationError(
                    f"{name} is not set (or set SEKIBAN_COSMOS_CONNECTION_STRING)"
                )
            settings[setting] = value
    database = os.environ.get("SEKIBAN_COSMOS_DATABASE")
    if database:
        settings["database"] = database
    return settings


def check_name(what: str, name: object) -> None:
    """Database ids and container prefixes: plain names, valid on every Cosmos DB."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{what} must be 1-63 characters of letters, digits, '-' or '_', starting with "
            f"a letter or digit, got {name!r}"
        )


@contextmanager
def translate_errors(endpoint: str, *, writing: bool = False) -> Iterator[None]:
    """Raise the SDK's failures as sekiban errors that name the endpoint (never the key):
    refused credentials as `StoreAuthenticationError`; a request that could not be sent,
    timed out or got no answer as `StoreConnectionError`; any other HTTP error as
    `StoreError`. `writing` says a write is in progress, whose outcome such a fault
    leaves unknown."""
    where = f"Cosmos DB at {endpoint}"
    try:
        yield
    except CosmosHttpResponseError as error:
        status = error.status_code
        if status in (401, 403):
            raise StoreAuthenticationError(
                f"{where} refused the credentials (HTTP {status}): check the account key"
            ) from error
        if status in _UNAVAILABLE:
            # 408/503: the server may have applied the request; 429 was refused unapplied.
            raise fault(
                StoreConnectionError,
                where,
                error,
                "try again later",
                outcome_unknown=writing and status != 429,
            ) from error
        raise fault(StoreError, where, error, "see the status", outcome_unknown=False) from error
    except (
        ServiceRequestError,
        ServiceResponseError,
        CosmosClientTimeoutError,
        OSError,
        TimeoutError,
    ) as error:
        # Even "cannot connect" (ServiceRequestError) does not prove that nothing was
        # sent: the SDK retries a request whose answer was lost and reports only its
        # last attempt's error (tests/integration/test_cosmos_stores.py shows it).
        raise fault(StoreConnectionError, where, error, _ADVICE, outcome_unknown=writing) from error
    except AzureError as error:
        raise fault(StoreError, where, error, "see the cause", outcome_unknown=writing) from error


_UNAVAILABLE = (408, 429, 503)
_ADVICE = "check the endpoint and that the server is running"
