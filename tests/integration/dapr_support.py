"""A Dapr cluster on loopback for integration tests: placement, hosts, sidecars."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sekiban.dapr.sidecar import (
    DaprCluster,
    SidecarError,
    find_binaries,
    postgres_actor_state_component,
)
from tests.conformance.backends import require_env


def dapr_binaries() -> Path:
    try:
        return find_binaries()
    except SidecarError as error:
        import os

        if os.environ.get("SEKIBAN_REQUIRE_SERVICES") == "1":
            pytest.fail(str(error))
        pytest.skip(str(error))


@contextmanager
def bank_cluster(
    tmp_path: Path,
    snapshot_count: int = 10,
    idle_seconds: int = 900,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[DaprCluster, str]]:
    """A cluster hosting the bank domain; yields it and the event store schema."""
    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    schema = f"dapr_{uuid.uuid4().hex[:10]}"
    component = postgres_actor_state_component("actorstate", dsn, f"{schema}_actor_state")
    env = {
        "SEKIBAN_POSTGRES_DSN": dsn,
        "SEKIBAN_POSTGRES_SCHEMA": schema,
        "SEKIBAN_SNAPSHOT_COUNT": str(snapshot_count),
        "SEKIBAN_ACTOR_IDLE_SECONDS": str(idle_seconds),
        **(extra_env or {}),
    }
    with DaprCluster(
        tmp_path, "examples.dapr_host:app", component, app_env=env, binaries=dapr_binaries()
    ) as cluster:
        yield cluster, schema
