"""Partition keys: which aggregate stream an event belongs to."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sekiban.errors import InvalidPartitionKeysError

DEFAULT = "default"
_NAME = re.compile(r"[a-z0-9_-]{1,36}")
_SEPARATOR = "@"


def validate_name(value: object, what: str) -> str:
    """Return `value` if it is a valid group or root partition key, else raise."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidPartitionKeysError(
            f"{what} must be 1-36 characters of a-z, 0-9, '-' or '_', got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """Identity of one aggregate stream: aggregate id, group and root partition key.

    The string form `root@group@aggregate_id` is stable and parses back with `parse`.
    It contains no `/`, `#`, `?` or `.`, so it is also a valid Dapr actor id.
    """

    aggregate_id: uuid.UUID
    group: str = DEFAULT
    root_partition_key: str = DEFAULT

    def __post_init__(self) -> None:
        if not isinstance(self.aggregate_id, uuid.UUID):
            raise InvalidPartitionKeysError(
                f"aggregate_id must be a UUID, got {self.aggregate_id!r}"
            )
        validate_name(self.group, "group")
        validate_name(self.root_partition_key, "root_partition_key")

    @classmethod
    def generate(cls, group: str = DEFAULT, root_partition_key: str = DEFAULT) -> PartitionKeys:
        """Keys for a new aggregate, with a fresh random aggregate id."""
        return cls(uuid.uuid4(), group, root_partition_key)

    @classmethod
    def existing(
        cls,
        aggregate_id: uuid.UUID | str,
        group: str = DEFAULT,
        root_partition_key: str = DEFAULT,
    ) -> PartitionKeys:
        """Keys for an aggregate that already exists; accepts the id as UUID or string."""
        return cls(_to_uuid(aggregate_id), group, root_partition_key)

    @classmethod
    def parse(cls, text: str) -> PartitionKeys:
        """Parse the string form produced by `str(keys)`, and only that spelling.

        Other spellings of the same keys (an upper-case or unhyphenated uuid, braces,
        spaces) raise `InvalidPartitionKeysError`: the string form names a stream or an
        actor, and one aggregate must have one name.
        """
        parts = text.split(_SEPARATOR) if isinstance(text, str) else []
        if len(parts) != 3:
            raise InvalidPartitionKeysError(
                f"partition keys must look like 'root@group@uuid', got {text!r}"
            )
        root, group, aggregate_id = parts
        keys = cls(_to_uuid(aggregate_id), group, root)
        if str(keys) != text:
            raise InvalidPartitionKeysError(
                f"partition keys {text!r} are not in their canonical form {str(keys)!r} "
                "(lower-case, hyphenated uuid)"
            )
        return keys

    def to_dict(self) -> dict[str, Any]:
        return {
            "aggregate_id": str(self.aggregate_id),
            "group": self.group,
            "root_partition_key": self.root_partition_key,
        }

    def __str__(self) -> str:
        return f"{self.root_partition_key}{_SEPARATOR}{self.group}{_SEPARATOR}{self.aggregate_id}"


def _to_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidPartitionKeysError(f"aggregate id must be a UUID, got {value!r}") from None
