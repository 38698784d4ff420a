"""The PostgreSQL layout: validated schema and table names, the DDL, the stream key and
how a position is made of a transaction id and an event's index."""

from __future__ import annotations

import re
import zlib
from typing import Any

from sekiban.core.partition_keys import PartitionKeys
from sekiban.errors import ConfigurationError

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")
POSITION_BITS = 16
MAX_EVENTS_PER_APPEND = (1 << POSITION_BITS) - 1
"""An append's events are numbered in the low 16 bits of their transaction's positions."""

WRITER_LOCK_CLASS = 0x5EB1
"""The first key of the advisory lock every append to an events table holds (shared)
while it runs; the second is `Tables.writer_lock`. `read_all` finds the appends in
flight by it (see `sekiban.stores.postgres`)."""

STREAM = "root_partition_key = $1 AND aggregate_group = $2 AND aggregate_id = $3"
"""The condition selecting one stream's rows, on the parameters of `stream_key`."""


class Tables:
    """Validated, quoted names of the store's schema and tables."""

    def __init__(self, schema: str, table_prefix: str) -> None:
        for what, name in (("schema", schema), ("table_prefix", table_prefix)):
            if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
                raise ConfigurationError(
                    f"{what} must match [a-z_][a-z0-9_]{{0,47}} (lowercase letters, digits, "
                    f"underscores; not starting with a digit), got {name!r}"
                )
        self.schema, self.prefix = schema, table_prefix
        self.quoted_schema = f'"{schema}"'
        self.events = f'"{schema}"."{table_prefix}_events"'
        self.snapshots = f'"{schema}"."{table_prefix}_snapshots"'
        self.projections = f'"{schema}"."{table_prefix}_projections"'
        self.command_index = f"{table_prefix}_events_command"
        """The unique index on (stream, command_id), unquoted, as errors name it."""
        self.notify_trigger = f"{table_prefix}_events_notify"
        """The statement trigger that notifies appends (`notifications.notify_ddl`)."""
        # A non-negative int4 per events table (advisory lock keys are int4 pairs, shown
        # in pg_locks as oids, so a negative one would not compare as written).
        self.writer_lock = zlib.crc32(f"{schema}.{table_prefix}_events".encode()) & 0x7FFFFFFF
        """The second key of the appends' advisory lock on this events table."""


def ddl(t: Tables) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {t.quoted_schema};
CREATE TABLE IF NOT EXISTS {t.events} (
    position            bigint      PRIMARY KEY CHECK (position > 0),
    root_partition_key  text        NOT NULL,
    aggregate_group     text        NOT NULL,
    aggregate_id        uuid        NOT NULL,
    version             integer     NOT NULL CHECK (version > 0),
    id                  uuid        NOT NULL,
    sortable_unique_id  text        NOT NULL,
    event_type          text        NOT NULL,
    payload             json        NOT NULL,
    timestamp           timestamptz NOT NULL,
    causation_id        text        NOT NULL,
    correlation_id      text        NOT NULL,
    executed_user       text        NOT NULL,
    command_id          text,
    CONSTRAINT "{t.prefix}_events_stream"
        UNIQUE (root_partition_key, aggregate_group, aggregate_id, version)
);
-- A commit's command id is on its first event's row only (NULL on the others and on
-- commits without one), so the unique index allows each id once per stream. Tables
-- made before command ids gain the column and the index here, in place.
ALTER TABLE {t.events} ADD COLUMN IF NOT EXISTS command_id text;
CREATE UNIQUE INDEX IF NOT EXISTS "{t.command_index}"
    ON {t.events} (root_partition_key, aggregate_group, aggregate_id, command_id)
    WHERE command_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS {t.snapshots} (
    root_partition_key      text        NOT NULL,
    aggregate_group         text        NOT NULL,
    aggregate_id            uuid        NOT NULL,
    projector_name          text        NOT NULL,
    version                 integer     NOT NULL,
    last_sortable_unique_id text,
    payload                 bytea       NOT NULL,
    projector_version       text        NOT NULL,
    payload_type            text        NOT NULL,
    format_version          integer     NOT NULL,
    encoding                text        NOT NULL,
    checksum                bigint      NOT NULL,
    taken_at                timestamptz NOT NULL,
    events_since_previous   integer     NOT NULL,
    signature               text,
    PRIMARY KEY (root_partition_key, aggregate_group, aggregate_id, projector_name)
);
ALTER TABLE {t.snapshots} ADD COLUMN IF NOT EXISTS signature text;
-- One row per multi-projector: its persisted state (see projections.py).
CREATE TABLE IF NOT EXISTS {t.projections} (
    name                text        PRIMARY KEY,
    projector_version   text        NOT NULL,
    schema_fingerprint  text        NOT NULL,
    position            bigint      NOT NULL,
    events_applied      bigint      NOT NULL,
    taken_at            timestamptz NOT NULL,
    encoding            text        NOT NULL,
    size                bigint      NOT NULL,
    sha256              text        NOT NULL,
    payload             bytea,
    blob_key            text,
    signature           text
);
"""


def stream_key(keys: PartitionKeys) -> tuple[str, str, Any]:
    return keys.root_partition_key, keys.group, keys.aggregate_id
