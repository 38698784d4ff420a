"""A message and state serializer that leaves our JSON exactly as we wrote it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dapr.serializers import DefaultJSONSerializer, Serializer


class RawJsonSerializer(Serializer):
    """Passes `bytes` and `str` through untouched; anything else goes to the SDK default.

    Why: the SDK's JSON decoder turns strings that look like dates (`2024-01-01...`)
    into `datetime` and duration-like strings (`10s`) into `timedelta`, which would
    silently alter user data. Commands, replies and snapshots are our own registry JSON,
    carried as raw text; the SDK's own messages (timer data) still use its default.
    """

    def __init__(self) -> None:
        self._default = DefaultJSONSerializer()

    def serialize(self, obj: object, custom_hook: Callable[[object], bytes] | None = None) -> bytes:
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, str):
            return obj.encode()
        return self._default.serialize(obj, custom_hook)

    def deserialize(
        self,
        data: bytes,
        data_type: type | None = object,
        custom_hook: Callable[[bytes], object] | None = None,
    ) -> Any:
        if data_type is bytes:
            return bytes(data)
        if data_type is str:
            return bytes(data).decode()
        return self._default.deserialize(data, data_type, custom_hook)


class RawStateSerializer(RawJsonSerializer):
    """For actor state: values always come back as the raw bytes daprd returned.

    The SDK asks for state as `object`, which the default decoder would turn into a
    dict with dates converted; snapshots parse their own JSON instead.
    """

    def deserialize(
        self,
        data: bytes,
        data_type: type | None = object,
        custom_hook: Callable[[bytes], object] | None = None,
    ) -> Any:
        return bytes(data)
