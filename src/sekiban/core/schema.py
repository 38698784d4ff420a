"""Event schema versions: how a stored event names its version, and upcasters.

An event type declares `schema_version` (default 1). A stored event's type string is
its registered name, followed by `@<version>` when the version is above 1, so rows
written before versions existed read as version 1 and no store layout changes. An
upcaster turns the JSON data of version n into version n + 1; reading an older event
runs the chain up to the current version, then validates as if the data were stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from sekiban.core.events import EventPayload
from sekiban.errors import ConfigurationError, SerializationError, UpcastError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the JSON data of one schema version into the next; a plain function."""


def stored_event_type(name: str, schema_version: int) -> str:
    """The type string a store keeps: `Name` for version 1, else `Name@<version>`."""
    return name if schema_version == 1 else f"{name}@{schema_version}"


def parse_stored_event_type(stored: str) -> tuple[str, int]:
    """The registered name and schema version a stored type string holds."""
    name, at, version = stored.rpartition("@")
    if at and version.isdigit() and version.isascii() and name:
        return name, int(version)
    return stored, 1


def check_event_name(name: str) -> None:
    if "@" in name:
        raise ConfigurationError(f"event name {name!r} must not contain '@' (it marks versions)")


class EventSchemas:
    """The upcasters of a domain's event types, checked to form complete chains."""

    def __init__(self) -> None:
        self._upcasters: dict[tuple[type[EventPayload], int], Upcaster] = {}
        self._checked: set[type[EventPayload]] = set()

    def add(self, event_type: type[EventPayload], from_version: int, upcaster: Upcaster) -> None:
        """Register the upcaster of `event_type` from `from_version` to the next version.

        A second upcaster for the same step, or a step outside 1..schema_version - 1,
        raises `ConfigurationError` at once.
        """
        current = event_type.schema_version
        if not 1 <= from_version < current:
            raise ConfigurationError(
                f"upcaster of {event_type.__qualname__} from version {from_version}: the "
                f"type is at schema version {current}, so steps run from 1 to {current - 1}"
            )
        if (event_type, from_version) in self._upcasters:
            raise ConfigurationError(
                f"two upcasters of {event_type.__qualname__} from version {from_version}"
            )
        self._upcasters[event_type, from_version] = upcaster

    def check(self, event_types: Iterable[type[EventPayload]]) -> None:
        """Raise `ConfigurationError` unless every type's chain reaches its version."""
        for event_type in event_types:
            if event_type in self._checked:
                continue
            current = event_type.schema_version
            if not isinstance(current, int) or isinstance(current, bool) or current < 1:
                raise ConfigurationError(
                    f"{event_type.__qualname__}.schema_version must be an integer >= 1, "
                    f"not {current!r}"
                )
            missing = [v for v in range(1, current) if (event_type, v) not in self._upcasters]
            if missing:
                steps = ", ".join(f"{v} -> {v + 1}" for v in missing)
                raise ConfigurationError(
                    f"{event_type.__qualname__} is at schema version {current} but has no "
                    f"upcaster for {steps}: old events of it could not be read"
                )
            self._checked.add(event_type)

    def upcast(
        self, event_type: type[EventPayload], version: int, data: dict[str, Any]
    ) -> dict[str, Any]:
        """`data` of `version` brought up to the current version of `event_type`."""
        self.check([event_type])
        for step in range(version, event_type.schema_version):
            data = self._upcasters[event_type, step](data)
            if not isinstance(data, dict):
                raise TypeError(f"the upcaster from version {step} returned {type(data).__name__}")
        return data


def decode_payload(
    event_type: type[EventPayload],
    version: int,
    text: str,
    schemas: EventSchemas,
    first_error: Exception | None,
) -> EventPayload:
    """The payload stored as `text` at schema `version`, read by the current type.

    The slow path: older versions are upcast, and (unless the type sets
    `read_extra = "forbid"`) fields the type no longer has are dropped. Raises
    `UpcastError` when an upcaster fails, `SerializationError`, or re-raises
    `first_error`, the fast path's failure, when tolerance changes nothing.
    """
    current = event_type.schema_version
    if version > current:
        raise SerializationError(
            f"written at schema version {version}; this code reads up to {current}"
        )
    data = json.loads(text)
    if not isinstance(data, dict):
        raise SerializationError(f"payload is {type(data).__name__}, not an object")
    try:
        data = schemas.upcast(event_type, version, data)
    except ConfigurationError:
        raise
    except Exception as error:  # the user's upcaster: any failure makes the event unreadable
        raise UpcastError(f"upcasting from version {version} failed: {error!r}") from error
    if event_type.read_extra == "ignore":
        known = _field_keys(event_type)
        data = {key: value for key, value in data.items() if key in known}
    elif first_error is not None:
        raise first_error
    try:
        text = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SerializationError(f"upcast data is not plain JSON: {error}") from None
    return event_type.model_validate_json(text)


def _field_keys(event_type: type[EventPayload]) -> set[str]:
    keys = set(event_type.model_fields)
    for field in event_type.model_fields.values():
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                keys.add(alias)
    return keys


def schema_fingerprint(
    event_names: dict[str, type[EventPayload]], write_names: dict[type, str]
) -> str:
    """A short hash of every non-trivial event schema: versions above 1 and old names.

    Empty while every type is at version 1 under its one name, so snapshots taken
    before schema versions existed stay valid.
    """
    lines = sorted(
        f"{name}->{write_names[cls]}@{cls.schema_version}"
        for name, cls in event_names.items()
        if cls.schema_version != 1 or write_names.get(cls) != name
    )
    if not lines:
        return ""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
