"""SQLite event, snapshot and projection stores: the embedded default, one file, no
server.

One row per commit: an append inserts a single row holding the command's events as a
JSON array, so a ten-event command costs SQLite one row and one index entry, not ten.
The INSERT is atomic by itself and also checks the expected version; it runs directly
on the event loop unless another writer holds the lock (see `database.Database`).

A commit's command id is in its row (`command_id`, NULL without one), under a partial
unique index per stream: the same INSERT refuses a second commit of one command id.
Files made before command ids gain the column and index when opened.

Positions number events 1, 2, 3, ... in commit order: a commit's row key is the
position of its last event, computed inside the write transaction, and SQLite runs
one write transaction at a time per database, so a reader resuming from its last
position cannot miss an event. Rows are found by their last event (position, or
version within the stream), so a read after any event starts at the commit holding
the next one. The view `events` shows one row per event for people
and ad-hoc SQL; the store itself never reads it.

Projection states are one row per multi-projector in `projections` (see
`projections.SqliteProjectionStore`), written by one upsert that keeps the newer state.
"""

from sekiban.stores.sqlite.projections import SqliteProjectionStore
from sekiban.stores.sqlite.snapshots import SqliteSnapshotStore
from sekiban.stores.sqlite.store import SqliteEventStore

__all__ = ["SqliteEventStore", "SqliteProjectionStore", "SqliteSnapshotStore"]
