"""The JSON the executor and the aggregate actor exchange: requests, replies, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.command import Command, CommandResponse
from sekiban.core.events import EventMetadata
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.payload_checks import stored_json
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.errors import RemoteCommandError, SekibanError, SerializationError
from sekiban.loading import LoadResult, LoadStatistics
from sekiban.snapshot.types import RejectionReason, SnapshotRejection


class IncompleteMessageError(Exception):
    """A request or reply that did not arrive whole: empty, truncated or not a JSON object.

    Not a `SekibanError`: it never reaches a caller. It means the transport failed, not
    that the caller's data is wrong, so the executor retries the call. daprd answers an
    actor call with status 200 and whatever part of the body it got when the actor
    host's connection drops mid-reply (it reads `io.ErrUnexpectedEOF` as a finished
    body), so an empty or cut reply can come with a success status.
    """


def command_request(serializer: Serializer, command: Command, metadata: EventMetadata) -> bytes:
    return (
        f'{{"command":{serializer.dump_command(command)},'
        f'"metadata":{json.dumps(_metadata_dict(metadata))}}}'
    ).encode()


def parse_command_request(serializer: Serializer, body: str) -> tuple[Command, EventMetadata]:
    data = _loads(body)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SerializationError("command metadata must be an object")
    command = serializer.command_from_envelope(data.get("command"))
    # Another client's JSON may hold what ours never sends (NaN, deep nesting, lone
    # surrogates): hold the command to the checks its events will face.
    stored_json(command, "command", data["command"]["type"], serializer.max_depth)
    return command, EventMetadata(
        str(metadata.get("causation_id", "")),
        str(metadata.get("correlation_id", "")),
        str(metadata.get("executed_user", "")),
    )


def command_reply(serializer: Serializer, response: CommandResponse) -> str:
    return json.dumps(
        {
            "ok": {
                "partition_keys": str(response.partition_keys),
                "version": response.version,
                "events": [serializer.to_stored(e).to_dict() for e in response.events],
            }
        }
    )


def error_reply(error: BaseException) -> str:
    return json.dumps({"error": {"type": type(error).__name__, "message": str(error)}})


def parse_command_reply(serializer: Serializer, body: bytes) -> CommandResponse:
    ok = _ok(body)
    with _reply_fields("command"):
        return CommandResponse(
            PartitionKeys.parse(ok["partition_keys"]),
            tuple(serializer.to_event(StoredEvent.from_dict(e)) for e in ok["events"]),
            int(ok["version"]),
        )


def aggregate_reply(serializer: Serializer, result: LoadResult) -> str:
    aggregate, stats = result.aggregate, result.statistics
    payload_type, payload = serializer.dump_payload(aggregate.payload)
    return json.dumps(
        {
            "ok": {
                "payload_type": payload_type,
                "payload": payload.decode(),
                "partition_keys": str(aggregate.partition_keys),
                "version": aggregate.version,
                "last_sortable_unique_id": aggregate.last_sortable_unique_id,
                "projector_name": aggregate.projector_name,
                "projector_version": aggregate.projector_version,
                "statistics": {
                    "from_snapshot": stats.from_snapshot,
                    "events_replayed": stats.events_replayed,
                    "duration_seconds": stats.duration.total_seconds(),
                    "snapshot_version": stats.snapshot_version,
                    "snapshot_taken_at": stats.snapshot_taken_at.isoformat()
                    if stats.snapshot_taken_at
                    else None,
                    "rejection": [stats.rejection.reason.value, stats.rejection.detail]
                    if stats.rejection
                    else None,
                },
            }
        }
    )


def parse_aggregate_reply(serializer: Serializer, body: bytes) -> LoadResult:
    ok = _ok(body)
    with _reply_fields("aggregate"):
        stats = ok["statistics"]
        last = ok["last_sortable_unique_id"]
        aggregate: Aggregate[AggregatePayload] = Aggregate(
            serializer.load_payload(ok["payload_type"], ok["payload"].encode()),
            PartitionKeys.parse(ok["partition_keys"]),
            int(ok["version"]),
            SortableUniqueId(last) if last else None,
            ok["projector_name"],
            ok["projector_version"],
        )
        taken_at, rejection = stats["snapshot_taken_at"], stats.get("rejection")
        return LoadResult(
            aggregate,
            LoadStatistics(
                bool(stats["from_snapshot"]),
                int(stats["events_replayed"]),
                timedelta(seconds=float(stats["duration_seconds"])),
                int(stats["snapshot_version"]),
                datetime.fromisoformat(taken_at) if taken_at else None,
                SnapshotRejection(RejectionReason(rejection[0]), rejection[1])
                if rejection
                else None,
            ),
        )


def _ok(body: bytes) -> dict[str, Any]:
    data = _loads(body)
    if "error" in data:
        error = data["error"] if isinstance(data["error"], dict) else {}
        error_type = str(error.get("type"))
        if error_type == IncompleteMessageError.__name__:
            # The actor got our request cut short and did nothing: a transport fault.
            raise IncompleteMessageError(f"the actor got an incomplete request: {error}")
        raise RemoteCommandError(error_type, str(error.get("message", "")))
    ok = data.get("ok")
    if not isinstance(ok, dict):
        raise IncompleteMessageError(f"actor reply has neither 'ok' nor 'error': {_head(body)}")
    return ok


def _loads(body: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as error:
        raise IncompleteMessageError(f"unreadable actor message ({error}): {_head(body)}") from None
    except RecursionError:
        # Whole but absurd (a cut message is never this): the sender's data is at fault.
        raise SerializationError(f"actor message nests too deeply: {_head(body)}") from None
    if not isinstance(data, dict):
        raise IncompleteMessageError(f"actor message is not a JSON object: {_head(body)}")
    return data


@contextmanager
def _reply_fields(kind: str) -> Iterator[None]:
    """A whole reply whose fields are not what this version of sekiban sends (e.g. an
    actor host on another version) is a `SerializationError`, not a `KeyError`."""
    try:
        yield
    except SekibanError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise SerializationError(
            f"{kind} reply from the actor is not understood: {error!r}"
        ) from error


def _head(body: str | bytes, limit: int = 120) -> str:
    """The first bytes of a message, for logs and errors."""
    text = body if isinstance(body, str) else body[:limit].decode(errors="replace")
    return repr(text[:limit]) + (" ..." if len(body) > limit else "") + f" ({len(body)} bytes)"


def _metadata_dict(metadata: EventMetadata) -> dict[str, str]:
    return {
        "causation_id": metadata.causation_id,
        "correlation_id": metadata.correlation_id,
        "executed_user": metadata.executed_user,
    }
