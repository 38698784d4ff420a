"""The SQLite file's layout: the tables and view, their creation, and the check that
refuses a file in an older layout."""

from __future__ import annotations

import sqlite3

from sekiban.core.partition_keys import PartitionKeys
from sekiban.errors import ConfigurationError

# A commit's `events`: [[id, sortable_unique_id, event_type, payload, timestamp,
# causation_id, correlation_id, executed_user], ...] for versions first_version, ...
SCHEMA = """
CREATE TABLE IF NOT EXISTS commits (
    position INTEGER PRIMARY KEY,
    root_partition_key TEXT NOT NULL,
    aggregate_group TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    first_version INTEGER NOT NULL,
    last_version INTEGER NOT NULL,
    events TEXT NOT NULL,
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
    # Files from before snapshot signing lack the last column; adding it keeps the
    # column order of a new file.
    columns = {row[1] for row in connection.execute("PRAGMA table_info(snapshots)")}
    if "signature" not in columns:
        connection.execute("ALTER TABLE snapshots ADD COLUMN signature TEXT")


def stream_key(keys: PartitionKeys) -> tuple[str, str, str]:
    return keys.root_partition_key, keys.group, str(keys.aggregate_id)
