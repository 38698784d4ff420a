"""Cosmos DB event, snapshot and projection stores on the async `azure-cosmos` SDK.

Containers. `<container_prefix>-events`, `<container_prefix>-snapshots` and
`<container_prefix>-projections` in one database, partitioned on `/pk`. For events and
snapshots `pk` = `str(partition_keys)` (`root@group@uuid`): an aggregate's commits share
one logical partition, and so do its snapshots; a projection's documents share the
partition of its name. Opening the
client and containers, connection strings and connection errors are in
`sekiban.stores.cosmos.connection`.

Appends: one document per commit. A command's events are ONE document,
`{"id": f"{expected_version:010d}", "pk", "first_version", "last_version",
"ordering_key", "events": [StoredEvent.to_dict() without partition_keys and position]}`.
Creating one document is atomic on every Cosmos DB, so no partial commit is ever
visible, and ids are unique within a logical partition, so of two writers at the same
expected version exactly one create succeeds; the other gets 409 → `ConcurrencyError`.
Because a commit's id is the stream version *before* it, a writer whose expected
version was ever the head collides with the commit that moved the stream on from there.
A writer whose expected version was never a head (inside a multi-event commit, or past
the end) would not collide, so an append at `expected_version > 0` first checks, with one
partition-scoped query, that a commit ends at exactly that version. Check-then-create is
race-free because boundaries never disappear: a checked boundary is either still the
head (one create at that id wins) or already followed by a commit (the create gets 409).
A stale read can only miss boundaries, which rejects a valid append (the caller reloads
and retries) and never accepts an invalid one. For the same reason the store remembers
the newest boundary it has seen per stream (its own appends, reads, conflicts) and skips
the query when appending there: the usual load-then-append costs one request.
This relies on commits never being deleted (no TTL, no manual deletes in the container).

Command ids. A commit carries `command_key`: "command:" + its command id, or
"commit:" + its own id without one (a missing unique key counts as a value Cosmos DB
allows once per partition). The events container's unique key policy on
`/command_key` is scoped to the logical partition, i.e. the stream, so a second commit
of one command id fails the create itself with 409; the store then finds the id with
one query and raises `DuplicateCommandError` instead of `ConcurrencyError`. Unique keys
can only be set when a container is created: an events container without this one is
refused at open (`ConfigurationError`). Not chosen: a marker document per command id
(a second write, not atomic with the commit without transactional batch), or checking
for the id before creating (a read-before-write window).

A commit document must stay under `max_commit_bytes` (default 1,900,000: Cosmos items
are limited to 2 MB), measured as the ASCII JSON the SDK sends; a larger one raises
`PayloadTooLargeError` and nothing is written. At most 2**16 events per commit.
On 409 the store reads the commit it collided with: if that holds this append's first
event id, an earlier attempt of this same request landed (an SDK retry after a lost
answer), so the append succeeded; reporting a conflict would make the executor run the
command again.

Not chosen: an ETag-guarded stream-head document plus event documents (two writes; with
no atomic batch, a crash between them leaves half a commit), a stored procedure or
transactional batch (atomic on real Cosmos DB only, so the tested code would not be the
shipped code), one document per event (atomic only for one-event commands).

Global order. Each commit gets an ordering key, a fresh `SortableUniqueId` (30 digits:
.NET ticks, then random digits; string order is numeric order) taken immediately before
its create, and event `i` of a commit gets position `int(ordering_key) * 2**16 + i` (an
unbounded Python int; not dense). `read_all` is a cross-partition query in ordering-key
order that returns only commits whose key is below the safe bound
`SortableUniqueId.min_for(now - safe_window)`, fixed at the start of the call: a commit
whose create was still in flight when a reader passed its key would otherwise be missed
for good, as no later read starts below the reader's last position.

That holds while every commit is visible to readers less than `safe_window` (default
5 s) after its key was taken, on the reader's clock: create latency (including the SDK's
retries after throttling, 429) + how far a writer's clock is behind a reader's +
replication lag (until readers in other processes or regions see the write) must stay
under the window. Multi-projections therefore see nothing younger than the window. A create
cannot be undone, so an append that took longer than the window is not failed (its
events are committed, and an error would make the executor run the command again): it
is logged as an ERROR and counted in `late_commits`, and a projection that may have
skipped it can be rebuilt from position 0. `safe_window=timedelta(0)` gives the
guarantee up (for tests with one writer at a time). Two commits from different processes
in the same 100 ns tick with the same 11 random digits would share positions:
negligible, not impossible.
Not chosen: a global counter document (serialises every append in the account through
one document and still needs gap handling), the change feed (ordered per partition only,
and its continuation does not work on the local server), `_ts` (whole seconds).

Snapshots live in their own container, one document per (aggregate, projector): id =
the projector name (a digest of it if it has characters Cosmos ids forbid), the fields
of `AggregateSnapshot.to_json` (payload in base64). Their own container keeps snapshot
writes out of the events' queries and indexing and can be dropped to reset the cache.
`save` reads the current document and replaces it only if that is not newer, guarded by
its ETag; a lost race (409 on create, 412 on replace) re-reads and decides again.

Projection states (`CosmosProjectionStore`) live in their own container, one logical
partition per multi-projector (pk = its name). The head document (id as for snapshots)
holds the `ProjectionRecord` fields; `position` is zero-padded 40-digit text, because
Cosmos DB positions pass 2**63 and JSON numbers lose precision past 2**53, and padded
text sorts as the numbers do. `save` reads the head, applies `ProjectionRecord.replaces`
and writes guarded by the head's ETag (create when there is none); a lost race (409,
412, 404) reads again and decides again, so racing saves never leave a lower position.

Items are limited to 2 MB. Stored bytes up to `CHUNK_BYTES` (1.1 MB, about 1.47 MB in
base64) are inline in the head; larger ones are split into chunk documents
`<head id>.<sha256>.<index>` in the same partition, and the head names their count
(`chunks`). The order of writes is the crash safety: every chunk is written first, then
the head (ETag-guarded), then the chunks of the head it replaced are deleted. A crash
before the head is written leaves the previous head and all its chunks in place (plus
unreferenced chunks, removed by `delete`); a crash after it leaves extra old chunks, never
a head without its chunks. Chunk ids carry the digest, so a save of other bytes never
overwrites chunks the current head names. A read that finds a chunk missing reads the
head again: if a save moved it on meanwhile (and deleted the chunks the read started
from), it reads the new state. A chunk missing under an unchanged head (deleted by
hand, or by a racing save of the same bytes) raises `SnapshotRejectedError` (missing)
and the projection is rebuilt from the events; chunk bytes that do not add up raise it
(corrupt). Not chosen: a transactional batch of head and chunks (atomic on real Cosmos
DB only; the local server the tests use has no batch, so the tested code would not be
the shipped code), one document per state (a state would be capped at 2 MB).
"""

from sekiban.stores.cosmos.commits import MAX_EVENTS_PER_APPEND
from sekiban.stores.cosmos.projections import CosmosProjectionStore
from sekiban.stores.cosmos.snapshots import CosmosSnapshotStore
from sekiban.stores.cosmos.store import (
    DEFAULT_MAX_COMMIT_BYTES,
    DEFAULT_SAFE_WINDOW,
    CosmosEventStore,
)

__all__ = [
    "DEFAULT_MAX_COMMIT_BYTES",
    "DEFAULT_SAFE_WINDOW",
    "MAX_EVENTS_PER_APPEND",
    "CosmosEventStore",
    "CosmosProjectionStore",
    "CosmosSnapshotStore",
]
