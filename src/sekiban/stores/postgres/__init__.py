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
its append`. Every append holds a shared advisory lock on its events table (keys
`WRITER_LOCK_CLASS`, `Tables.writer_lock`), taken before its transaction gets an id.
`read_all` first reads its bound, in a statement of its own: the lowest transaction id
among the appends holding that lock (found in pg_locks), or, with none in flight, the
next id PostgreSQL will give. Its pages then return only rows whose transaction id is
below the bound.

Why that is safe: every page's snapshot is taken after the bound was read. An append
with an id below the bound was not holding the lock then, and it takes the lock before
it has an id, so it had already ended: its rows are either visible to the page's
snapshot or never will be. Every append still running then, and every one that starts
later, has an id >= the bound, so all its positions are above every position the reader
was given. A reader that resumes after the last position it saw therefore never misses
an event, whatever order the transactions commit in. Positions are unique (one
transaction per append, fewer than 2**16 events each) and increase with the order
transactions got their ids; they are not dense.
`tests/integration/test_postgres_global_order.py` holds an append open on purpose to
show it.

Why not the alternatives:
- a position sequence plus a filter on transaction ids is not enough: sequence order and
  transaction-id order can disagree (a transaction can take its id before another one
  takes a lower sequence number), so a reader could still pass an event by;
- a commit-order lock (`pg_advisory_xact_lock` before taking positions) is correct but
  serialises every append in the database through its commit flush; measured with 10
  concurrent writers on different streams it halved append throughput (about 2,900 vs
  6,000 commands/s on a 2-CPU machine), and the cost grows with commit latency (the
  writer lock here is shared: appends never wait for each other on it);
- the xmin of the reader's snapshot (the oldest transaction running in the whole
  cluster), this store's bound until the writer lock: correct, but any long transaction
  anywhere (a report, a migration, a session idle in transaction, another service's
  writes in the same database) held every multi-projection, reaction and
  read-your-writes query back until it ended;
- a time-based safe window (wait N ms for gaps to fill) loses the event of any
  transaction slower than the window.

The price of this design: a slow append holds readers back until it ends (they wait
for it rather than pass it), and a `read_all` costs one more statement (its bound).
Every writer of a table must take the writer lock, so all processes appending to it
must run this version or later. The position runs out after 2**47 transaction ids (44
years at 100,000 writing transactions a second); then the `position > 0` check makes
appends fail loudly rather than misorder.

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
