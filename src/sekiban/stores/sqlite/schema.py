"""The SQLite file's layout: the tables and view, their creation, and the check that
refuses a file in an older layout."""

from __future__ import annotations

import sqlite3

from sekiban.core.partition_keys import PartitionKeys
from sekiban.errors import ConfigurationError

# A commit's `events`: [[id, sortable_unique_id, event_type, payload, timestamp,
# causation_id, correlation_id, executed_user], ...] for versions first_version, ...
# `command_id` is NULL for a commit appended without one (see COMMAND_ID).
SCHEMA = """
CREATE TABLE IF NOT EXISTS commits (
    position INTEGER PRIMARY KEY,
    root_partition_key TEXT NOT NULL,
    aggregate_group TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    first_version INTEGER NOT NULL,
    last_version INTEGER NOT NULL,
    events TEXT NOT NULL,
    command_id TEXT,
    UNIQUE (root_partition_key, aggregate_group, aggregate_id, last_version)
);
CREATE VIEW IF NOT EXISTS events AS
SELECT
    c.position - c.last_version + c.first_version + e.key AS position,
    json_extract(e.value, '$[0]') AS id,
    json_extract(e.value, '$[1]') AS sortable_unique_id,
    c.root_partition_key,
    c.aggregate_group,
    c.aggregate_id,
    c.first_version + e.key AS version,
    json_extract(e.value, '$[2]') AS event_type,
    json_extract(e.value, '$[3]') AS payload,
    json_extract(e.value, '$[4]') AS timestamp,
    json_extract(e.value, '$[5]') AS causation_id,
    json_extract(e.value, '$[6]') AS correlation_id,
    json_extract(e.value, '$[7]') AS executed_user
FROM commits AS c, json_each(c.events) AS e;
CREATE TABLE IF NOT EXISTS snapshots (
    root_partition_key TEXT NOT NULL,
    aggregate_group TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    projector_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_sortable_unique_id TEXT,
    payload BLOB NOT NULL,
    projector_version TEXT NOT NULL,
    payload_type TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    checksum INTEGER NOT NULL,
    taken_at TEXT NOT NULL,
    events_since_previous INTEGER NOT NULL,
    signature TEXT,
    PRIMARY KEY (root_partition_key, aggregate_group, aggregate_id, projector_name)
);
CREATE TABLE IF NOT EXISTS projections (
    name TEXT PRIMARY KEY,
    projector_version TEXT NOT NULL,
    schema_fingerprint TEXT NOT NULL,
    position INTEGER NOT NULL,
    events_applied INTEGER NOT NULL,
    taken_at TEXT NOT NULL,
    encoding TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    payload BLOB,
    blob_key TEXT,
    signature TEXT
);
"""

# A command id is unique per stream: the index is the guarantee, in the INSERT itself.
COMMAND_ID = """
CREATE UNIQUE INDEX IF NOT EXISTS commits_command
ON commits (root_partition_key, aggregate_group, aggregate_id, command_id)
WHERE command_id IS NOT NULL
"""

STREAM = "root_partition_key = ? AND aggregate_group = ? AND aggregate_id = ?"
"""The condition selecting one stream's rows, on the parameters of `stream_key`."""


def create_schema(connection: sqlite3.Connection) -> None:
    row = connection.execute("SELECT type FROM sqlite_master WHERE name = 'events'").fetchone()
    if row is not None and row[0] == "table":
        raise ConfigurationError(
            "this SQLite file has the one-row-per-event `events` table of sekiban before "
            "0.1.0; this version keeps one row per commit (table `commits`) and cannot "
            "read it: start from a new file"
        )
    connection.executescript(SCHEMA)
    # Files made before command ids or snapshot signing gain the columns (NULL for old
    # rows; appended last, as a new file has them) and the command id index in place,
    # in one write transaction, so processes opening one file at the same time take
    # turns.
    connection.execute("BEGIN IMMEDIATE")
    try:
        columns = {c[1] for c in connection.execute("PRAGMA table_info(commits)")}
        if "command_id" not in columns:
            connection.execute("ALTER TABLE commits ADD COLUMN command_id TEXT")
        connection.execute(COMMAND_ID)
        columns = {c[1] for c in connection.execute("PRAGMA table_info(snapshots)")}
        if "signature" not in columns:
            connection.execute("ALTER TABLE snapshots ADD COLUMN signature TEXT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def stream_key(keys: PartitionKeys) -> tuple[str, str, str]:
    return keys.root_partition_key, keys.group, str(keys.aggregate_id)
