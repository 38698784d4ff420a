"""A TCP proxy between a store and its real server that a test can cut.

It forwards bytes both ways unchanged (TLS included) on a free local port. `cut()`
drops every open connection and refuses new ones until `restore()`: the server is
gone. `lose_reply(marker)` lets the next request through to the server and drops the
first answer to it that holds `marker` (with no marker: the first answer after the
client sent TLS application data, i.e. a request, not a handshake), then cuts: the
write is done, its answer is lost, and a driver's own retries find no server.
`stall()` keeps every connection open and forwards nothing (a partition: no error,
no answer) until `restore()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

_TLS_DATA = 23  # the record type of TLS application data


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.refusing = False
        self.losing = False
        self.stalled = False
        self.reply_marker: bytes | None = None
        self.replies_lost = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        self.refusing = True
        for writer in list(self._writers):
            writer.transport.abort()

    def stall(self) -> None:
        self.stalled = True

    def restore(self) -> None:
        self.refusing = self.losing = self.stalled = False

    def lose_reply(self, marker: bytes | None = None) -> None:
        self.losing, self.reply_marker = True, marker

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        requested = [False]  # whether the client sent a request since `lose_reply`
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer, requested, replies=False),
                self._pipe(upstream_reader, writer, requested, replies=True),
            )
        finally:
            for w in (writer, upstream_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        requested: list[bool],
        *,
        replies: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.stalled:
                    continue  # dropped on the floor: the other side hears nothing
                marker = self.reply_marker
                if self.losing and not replies and (marker is not None or data[0] == _TLS_DATA):
                    requested[0] = True
                if self.losing and replies and requested[0] and (marker or b"") in data:
                    self.replies_lost += 1
                    self.losing = False
                    self.cut()
                    break
                writer.write(data)
                await writer.drain()
        # One side ended: end the other, as a broken network would.
        writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def fault_proxy(host: str, port: int) -> AsyncIterator[FaultProxy]:
    proxy = await FaultProxy(host, port).start()
    try:
        yield proxy
    finally:
        await proxy.close()
