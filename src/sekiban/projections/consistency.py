"""Read-your-writes: a command's consistency token, and waiting for a projection to
reach it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sekiban.core.command import CommandResponse
from sekiban.core.partition_keys import PartitionKeys
from sekiban.errors import ConsistencyTimeoutError, InvalidReadError, SekibanError
from sekiban.stores.protocols import EventStore

R = TypeVar("R")
_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 0.25


@dataclass(frozen=True, slots=True)
class ConsistencyToken:
    """Names a command's last event: its stream and version, spelled `keys@version`.

    Get it from `CommandResponse.consistency_token` (e.g. in an HTTP header) and pass it
    as `query(..., after=token)`: the query then waits until its projection has applied
    that event, wherever the command ran.
    """

    partition_keys: PartitionKeys
    version: int

    def __str__(self) -> str:
        return f"{self.partition_keys}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> ConsistencyToken:
        """The token `str(token)` spelled; anything else raises `InvalidReadError`."""
        keys, _, version = text.rpartition("@") if isinstance(text, str) else ("", "", "")
        try:
            if not version.isdecimal():
                raise ValueError(f"no version after the last '@' in {text!r}")
            return cls(PartitionKeys.parse(keys), int(version))
        except (ValueError, SekibanError) as error:
            raise InvalidReadError(f"not a consistency token: {error}") from None

    @classmethod
    def of(cls, value: CommandResponse | ConsistencyToken | str) -> ConsistencyToken:
        """The token of a command response, a token, or a token's text."""
        if isinstance(value, ConsistencyToken):
            return value
        if isinstance(value, CommandResponse):
            return cls(value.partition_keys, value.version)
        return cls.parse(value)

    async def position(self, event_store: EventStore) -> int:
        """The global position of the event the token names; `InvalidReadError` if the
        stream has no event at that version."""
        if self.version == 0:
            return 0
        async for batch in event_store.read_stream(self.partition_keys, self.version - 1, 1):
            if batch and batch[0].position is not None:
                return batch[0].position
        raise InvalidReadError(f"no event at version {self.version} of {self.partition_keys}")


async def wait_until(
    attempt: Callable[[], Awaitable[tuple[bool, R | None]]],
    projector_name: str,
    target: int | None,
    timeout: timedelta,
) -> R:
    """Call `attempt` until it reports done, pausing a little longer each time;
    `ConsistencyTimeoutError` when `timeout` passes first."""
    deadline = time.monotonic() + timeout.total_seconds()
    pause = _FIRST_PAUSE
    while True:
        done, value = await attempt()
        if done:
            return value  # type: ignore[return-value]
        if time.monotonic() + pause > deadline:
            raise ConsistencyTimeoutError(
                f"projection {projector_name!r} did not reach position {target} within "
                f"{timeout.total_seconds():g} s"
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)
