"""PostgreSQL event, snapshot and projection stores on asyncpg, sharing one connection
pool.

Tables live in `schema` and are named `<table_prefix>_events`, `<table_prefix>_snapshots`
and `<table_prefix>_projections` (one row per multi-projector, see `projections.py`);
`PostgresEventStore.open(create_schema=True)` creates them idempotently (see `schema.ddl`).
Needs PostgreSQL 13 or newer (`pg_current_xact_id`, `pg_current_snapshot`).

Appends. One command's events go in with ONE statement, an `INSERT ... SELECT FROM
unnest(...)`, which is atomic by itself (one round trip, no explicit transaction). The
unique constraint on (root, group, aggregate id, version) turns a conflicting append
into `ConcurrencyError`; the statement also inserts nothing unless version
`expected_version` already exists, so an append ahead of the stream is rejected too and
versions never have gaps.

Command ids. The first row of a commit carries its command id (`command_id`, NULL on
the others and without one) under the partial unique index `<prefix>_events_command` on
(stream, command_id), so the append statement itself refuses a second commit of one id
(`DuplicateCommandError`, told apart from a version conflict by the index's name).
`read_command` finds that row and reads the rows of its transaction (positions share
their upper bits). `open(create_schema=True)` adds the column and index to tables made
before command ids; `create_schema=False` refuses such a table.

Global order. `position = (id of the writing transaction << 16) + index of the event in
its append`, and `read_all` returns only rows whose transaction id is below the xmin of
the reading statement's own snapshot (the oldest transaction still running then).

Why that is safe: a transaction id below that xmin belongs to a transaction that has
ended, so its rows are either visible to that very snapshot or never will be. Every
transaction still running, and every one that starts later, has an id >= xmin, so all
its positions are above every position the reader was given. A reader that resumes
after the last position it saw therefore never misses an event, whatever order the
transactions commit in. Positions are unique (one transaction per append, fewer than
2**16 events each) and increase with the order transactions got their ids; they are not
dense. `tests/integration/test_postgres_global_order.py` holds an append open on purpose
to show it.

Why not the alternatives:
- a position sequence plus a filter on transaction ids is not enough: sequence order and
  transaction-id order can disagree (a transaction can take its id before another one
  takes a lower sequence number), so a reader could still pass an event by;
- a commit-order lock (`pg_advisory_xact_lock` before taking positions) is correct but
  serialises every append in the database through its commit flush; measured with 10
  concurrent writers on different streams it halved append throughput (about 2,900 vs
  6,000 commands/s on a 2-CPU machine), and the cost grows with commit latency;
- a time-based safe window (wait N ms for gaps to fill) loses the event of any
  transaction slower than the window.

The price of this design is read latency, not lost events or slower appends: `read_all`
returns nothing newer than the oldest running transaction *of the whole cluster*, so a
long transaction (even an unrelated one, or a session idle in transaction) holds
multi-projections back until it ends. The position also runs out after 2**47
transaction ids (44 years at 100,000 writing transactions a second); then the
`position > 0` check makes appends fail loudly rather than misorder.

Loads. With its own snapshot store (`snapshot_store()`), the store reads an aggregate's
snapshot and the events from the snapshot's version on in one statement
(`read_snapshot_and_stream`), so a load is one round trip, not two; the replay
optimizer's checks on the snapshot are the same.

Round trip. `StoredEvent.payload` is kept in a `json` column: PostgreSQL checks that it is
JSON but keeps the text byte for byte (`jsonb` would read `{"amount":1}` back as
`{"amount": 1}`, and measured no faster). Event ids are `uuid`, read back in canonical
lowercase form. Timestamps are `timestamptz` and read back as UTC-aware datetimes, equal
to the aware datetimes written (naive ones are taken as UTC and come back aware).
"""

from sekiban.stores.postgres.projections import PostgresProjectionStore
from sekiban.stores.postgres.schema import MAX_EVENTS_PER_APPEND
from sekiban.stores.postgres.snapshots import PostgresSnapshotStore
from sekiban.stores.postgres.store import PostgresEventStore

__all__ = [
    "MAX_EVENTS_PER_APPEND",
    "PostgresEventStore",
    "PostgresProjectionStore",
    "PostgresSnapshotStore",
]
