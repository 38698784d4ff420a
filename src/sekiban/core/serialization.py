"""JSON serialization of events, commands and payloads through the domain registry."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.command import Command
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import Event, EventMetadata, EventPayload, rebuild_event
from sekiban.core.fastpaths import sortable_id_from_text, trusted_constructor, uuid_from_text
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.payload_checks import DEFAULT_MAX_DEPTH, stored_json
from sekiban.core.query import Query
from sekiban.errors import (
    CommandValidationError,
    ConfigurationError,
    SekibanError,
    SerializationError,
    UpcastError,
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stores keep it: the payload is JSON text, its type a registered name.

    `position` is the store's global order, set by the store when it reads.
    """

    id: str
    sortable_unique_id: str
    version: int
    partition_keys: PartitionKeys
    event_type: str
    payload: str
    timestamp: datetime
    causation_id: str = ""
    correlation_id: str = ""
    executed_user: str = ""
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the payload stays JSON text), for documents and the wire."""
        return {
            "id": self.id,
            "sortable_unique_id": self.sortable_unique_id,
            "version": self.version,
            "partition_keys": str(self.partition_keys),
            "event_type": self.event_type,
            "payload": self.payload,
            "timestamp": self.timestamp.isoformat(),
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
            "executed_user": self.executed_user,
            "position": self.position,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredEvent:
        """Parse `to_dict` output; malformed input raises `SerializationError`."""
        try:
            return cls(
                id=str(data["id"]),
                sortable_unique_id=str(data["sortable_unique_id"]),
                version=int(data["version"]),
                partition_keys=PartitionKeys.parse(data["partition_keys"]),
                event_type=str(data["event_type"]),
                payload=str(data["payload"]),
                timestamp=datetime.fromisoformat(data["timestamp"]),
                causation_id=str(data.get("causation_id", "")),
                correlation_id=str(data.get("correlation_id", "")),
                executed_user=str(data.get("executed_user", "")),
                position=data.get("position"),
            )
        except (KeyError, TypeError, ValueError, SekibanError) as error:
            raise SerializationError(f"malformed stored event: {error!r}") from None


class Serializer:
    """Turns domain objects into JSON and back, resolving names only via `DomainTypes`.

    What it writes (`to_stored`, `dump_payload`, `dump_command`) is checked to read
    back as it was, nesting at most `max_depth` containers (see `payload_checks`):
    anything else raises `UnstorablePayloadError` before a byte is written.
    """

    def __init__(self, domain: DomainTypes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.domain = domain
        self.max_depth = max_depth
        domain.validate()
        # The registry's stored-name maps, read directly on the replay hot path: a
        # current-version event costs one dict lookup, anything older is upcast.
        self._event_types = domain.stored_event_types
        self._event_names = domain.stored_event_names
        self._validators: dict[str, Any] = {}  # by stored name, for `commit_events`
        self._last_metadata = _NO_METADATA

    def to_stored(self, event: Event[EventPayload]) -> StoredEvent:
        """The event as stores keep it; raises `UnstorablePayloadError` for a payload
        that would not read back as it is."""
        metadata = event.metadata
        name = self._event_names.get(type(event.payload))
        if name is None:
            name = self.domain.event_name(type(event.payload))
        return rebuild_stored_event(
            str(event.id),
            event.sortable_unique_id,
            event.version,
            event.partition_keys,
            name,
            stored_json(event.payload, "event", name, self.max_depth),
            event.timestamp,
            metadata.causation_id,
            metadata.correlation_id,
            metadata.executed_user,
            None,
        )

    def _metadata(self, stored: StoredEvent) -> EventMetadata:
        """The event's metadata; the previous event's object when they are equal (one
        command's events share theirs, and `EventMetadata` is immutable)."""
        last = self._last_metadata
        if (
            stored.correlation_id == last.correlation_id
            and stored.causation_id == last.causation_id
            and stored.executed_user == last.executed_user
        ):
            return last
        metadata = EventMetadata(stored.causation_id, stored.correlation_id, stored.executed_user)
        self._last_metadata = metadata
        return metadata

    def to_event(self, stored: StoredEvent) -> Event[EventPayload]:
        """Decode a stored event; raises `UnknownTypeError` or `SerializationError`
        (`UpcastError` when an upcaster failed on it).

        Stored envelopes were validated when they were written, so only the payload is
        parsed here (it must be, to build the model); ids are rebuilt without re-checking.
        Events of an older schema version or an old type name are upcast first.
        """
        payload_type = self._event_types.get(stored.event_type)
        try:
            if payload_type is None:
                payload = self.domain.read_event_payload(stored.event_type, stored.payload)
            else:
                try:
                    # The validator itself: what `model_validate_json` calls, without
                    # its Python wrapper (a fifth of this method's time per event).
                    payload = payload_type.__pydantic_validator__.validate_json(stored.payload)
                except ValidationError as error:
                    # Perhaps a field the type no longer has: the tolerant path decides.
                    payload = self.domain.read_event_payload(
                        stored.event_type, stored.payload, error
                    )
            metadata = self._metadata(stored)
            return rebuild_event(
                uuid_from_text(stored.id),
                sortable_id_from_text(stored.sortable_unique_id),
                stored.version,
                stored.partition_keys,
                payload,
                stored.timestamp,
                metadata,
            )
        except ConfigurationError:
            raise  # an incomplete upcaster chain is the domain's fault, not the event's
        except (
            ValidationError,
            ValueError,
            TypeError,
            AttributeError,
            RecursionError,
            SerializationError,
        ) as error:
            # Whatever a damaged row holds, the caller learns which event it was (and,
            # by the class, whether an upcaster failed on it).
            kind = UpcastError if isinstance(error, UpcastError) else SerializationError
            raise kind(
                f"stored event {stored.id} ({stored.event_type}, version {stored.version} of "
                f"{stored.partition_keys}) cannot be decoded: {error}"
            ) from error

    def commit_events(
        self, rows: Sequence[Any], partition_keys: PartitionKeys, first_version: int
    ) -> Iterator[Event[EventPayload]]:
        """Decode one commit's events from envelope rows, versions from `first_version`,
        one at a time as the caller takes them.

        A row is `[id, sortable id, event type, payload JSON text, ISO timestamp,
        causation id, correlation id, user]`, as a store keeps a commit in one JSON
        document (SQLite). Yields `to_event` of each row's `StoredEvent`, errors
        included, without building the `StoredEvent`s; a row that is not such an
        envelope raises `SerializationError` naming the commit (`corrupt_commit`).
        Lazily, because a fold that takes each event as it is made keeps few objects
        alive: a replay decoding a whole batch first spends the time it saved in the
        garbage collector.
        """
        return self._row_events(rows, partition_keys, first_version, versioned=False)

    def row_events(
        self, rows: Sequence[Any], partition_keys: PartitionKeys
    ) -> Iterator[Event[EventPayload]]:
        """`commit_events` for rows that carry their own version first, timestamps as
        `datetime`: `(version, id, sortable id, event type, payload JSON text, timestamp,
        causation id, correlation id, user)`, as a store keeps one event per row
        (PostgreSQL). The versions are the rows' own: the fold checks they follow on."""
        first_version = rows[0][0] if rows else 0
        return self._row_events(rows, partition_keys, first_version, versioned=True)

    def _row_events(
        self,
        rows: Sequence[Any],
        partition_keys: PartitionKeys,
        first_version: int,
        *,
        versioned: bool,
    ) -> Iterator[Event[EventPayload]]:
        """The loop of `commit_events` and `row_events`.

        The first loop is the common case only, a current-version event whose payload
        validates; from the first row it does not take (an old type name to upcast, a
        payload that fails, a malformed id) the rest of the rows go through `to_event`,
        which decides and words the error exactly as for any other store.
        """
        event_types, validators = self._event_types, self._validators
        metadata = _NO_METADATA
        stamp: Any = ""
        timestamp = None
        version, taken = first_version, 0
        try:
            for row in rows:
                if versioned:
                    (
                        version,
                        event_id,
                        sortable_id,
                        event_type,
                        payload,
                        at,
                        causation,
                        correlation,
                        user,
                    ) = row
                else:
                    event_id, sortable_id, event_type, payload, at, causation, correlation, user = (
                        row
                    )
                if at != stamp:  # one command's events share their timestamp
                    stamp = at
                    timestamp = at if type(at) is datetime else datetime.fromisoformat(at)
                validator = validators.get(event_type)
                if validator is None:
                    if event_type not in event_types:
                        break
                    validator = event_types[event_type].__pydantic_validator__
                    validators[event_type] = validator
                if (
                    causation != metadata.causation_id
                    or correlation != metadata.correlation_id
                    or user != metadata.executed_user
                ):
                    metadata = EventMetadata(causation, correlation, user)
                try:
                    event = rebuild_event(
                        uuid_from_text(event_id),
                        sortable_id_from_text(sortable_id),
                        version,
                        partition_keys,
                        validator.validate_json(payload),
                        timestamp,
                        metadata,
                    )
                except (ValidationError, ValueError, TypeError, RecursionError):
                    break  # `to_event` decides: the tolerant path, or the error
                yield event
                version += 1
                taken += 1
            else:
                return
            to_event = self.to_event
            for row in rows[taken:]:
                fields = row
                if versioned:
                    version, *fields = row
                event_id, sortable_id, event_type, payload, at, causation, correlation, user = (
                    fields
                )
                if at != stamp:  # one command's events share their timestamp
                    stamp = at
                    timestamp = at if type(at) is datetime else datetime.fromisoformat(at)
                stored = rebuild_stored_event(
                    event_id,
                    sortable_id,
                    version,
                    partition_keys,
                    event_type,
                    payload,
                    timestamp,
                    causation,
                    correlation,
                    user,
                    None,
                )
                yield to_event(stored)
                version += 1
        except SekibanError:
            raise  # `to_event`'s own (a `ConfigurationError` is also a ValueError)
        except (ValueError, TypeError) as error:
            # The row itself: not an envelope's fields, or no ISO timestamp.
            raise corrupt_commit(partition_keys, first_version, error) from None

    def dump_command(self, command: Command) -> str:
        """`{"type": name, "payload": {...}}` for sending a command across a process."""
        name = self.domain.command_name(type(command))
        payload = stored_json(command, "command", name, self.max_depth)
        return f'{{"type":{json.dumps(name)},"payload":{payload}}}'

    def load_command(self, text: str | bytes) -> Command:
        """Decode `dump_command` output; bad fields raise `CommandValidationError`."""
        return self.command_from_envelope(_load_envelope(text, "command"))

    def command_from_envelope(self, envelope: Any) -> Command:
        """Decode a parsed `{"type": name, "payload": {...}}` command envelope."""
        _check_envelope(envelope, "command")
        command_type = self.domain.command_type(envelope["type"])
        try:
            return command_type.model_validate(envelope["payload"])
        except ValidationError as error:
            raise CommandValidationError(
                envelope["type"], [dict(e) for e in error.errors(include_url=False)]
            ) from None

    def aggregate_fields(self, aggregate: Aggregate[AggregatePayload]) -> dict[str, Any]:
        """An aggregate as JSON data, its payload (JSON text) under its registered type
        name, for sending it across a process."""
        payload_type, payload = self.dump_payload(aggregate.payload)
        return {
            "payload_type": payload_type,
            "payload": payload.decode(),
            "partition_keys": str(aggregate.partition_keys),
            "version": aggregate.version,
            "last_sortable_unique_id": aggregate.last_sortable_unique_id,
            "projector_name": aggregate.projector_name,
            "projector_version": aggregate.projector_version,
        }

    def aggregate_from_fields(self, fields: dict[str, Any]) -> Aggregate[AggregatePayload]:
        """The aggregate `aggregate_fields` wrote (the payload type resolves through the
        registry only); missing or mistyped fields raise `KeyError`/`TypeError`."""
        last = fields["last_sortable_unique_id"]
        return Aggregate(
            self.load_payload(fields["payload_type"], fields["payload"].encode()),
            PartitionKeys.parse(fields["partition_keys"]),
            int(fields["version"]),
            sortable_id_from_text(last) if last else None,
            str(fields["projector_name"]),
            str(fields["projector_version"]),
        )

    def dump_query(self, query: Query[Any]) -> str:
        """`{"type": name, "payload": {...}}` for sending a query across a process; the
        query type must be registered."""
        name = self.domain.query_name(type(query))
        payload = stored_json(query, "query", name, self.max_depth)
        return f'{{"type":{json.dumps(name)},"payload":{payload}}}'

    def query_from_envelope(self, envelope: Any) -> Query[Any]:
        """Decode a parsed `dump_query` envelope; bad fields raise `SerializationError`."""
        _check_envelope(envelope, "query")
        query_type = self.domain.query_type(envelope["type"])
        try:
            return query_type.model_validate(envelope["payload"])
        except ValidationError as error:
            raise SerializationError(
                f"query {envelope['type']} does not validate: {error}"
            ) from None

    def dump_payload(self, payload: AggregatePayload) -> tuple[str, bytes]:
        """The registered type name of an aggregate payload and its JSON bytes."""
        name = self.domain.payload_name(type(payload))
        return name, stored_json(payload, "aggregate payload", name, self.max_depth).encode()

    def load_payload(self, type_name: str, data: bytes) -> AggregatePayload:
        payload_type = self.domain.payload_type(type_name)
        try:
            return payload_type.model_validate_json(data)
        except ValidationError as error:
            raise SerializationError(
                f"aggregate payload {type_name} cannot be decoded: {error}"
            ) from error


_NO_METADATA = EventMetadata()
rebuild_stored_event = trusted_constructor(StoredEvent)
"""`StoredEvent(...)` with every field positional, for stores rebuilding read rows."""


def corrupt_commit(
    partition_keys: PartitionKeys, first_version: int, error: BaseException
) -> SerializationError:
    """The error for a commit whose stored rows are not events (the commit, not an
    event of it, is what can be named)."""
    return SerializationError(
        f"the commit of {partition_keys} from version {first_version} cannot be decoded: {error!r}"
    )


def _load_envelope(text: str | bytes, what: str) -> Any:
    try:
        envelope = json.loads(text)
    except (ValueError, TypeError, RecursionError) as error:
        raise SerializationError(f"{what} is not valid JSON: {error}") from None
    _check_envelope(envelope, what)
    return envelope


def _check_envelope(envelope: Any, what: str) -> None:
    if not (
        isinstance(envelope, dict)
        and isinstance(envelope.get("type"), str)
        and isinstance(envelope.get("payload"), dict)
    ):
        raise SerializationError(f'{what} must be {{"type": str, "payload": object}}')
