"""The actor host's token check, through real HTTP requests to uvicorn on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn

from examples.bank import bank_domain
from sekiban.dapr.app import create_actor_app
from sekiban.stores import EventStore, InMemoryEventStore

TOKEN = "s3cret-token"


async def _memory_store() -> EventStore:
    return InMemoryEventStore()


@asynccontextmanager
async def actor_host(token: str) -> AsyncIterator[int]:
    """The actor host app served by uvicorn on a free loopback port; yields the port.

    Lifespan off: the token middleware is what is tested, and actor registration
    would touch the SDK's process-wide runtime.
    """
    app = create_actor_app(bank_domain(), _memory_store, app_api_token=token)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await serving


async def status_of(port: int, token_header: bytes | None, path: str = "/dapr/config") -> int:
    """The status of a GET carrying `token_header` as raw bytes (None: no header)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        header = b"" if token_header is None else b"dapr-api-token: " + token_header + b"\r\n"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
            + header
            + b"\r\n"
        )
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "header",
    [
        "s3cret-t\xf6ken".encode("latin-1"),  # non-ASCII, raw latin-1 bytes
        b"\xff\xfe\x80",
        "s3cret-token-\u00e9".encode(),  # the token and UTF-8 bytes after it
        b"wrong",
        b"",
        None,
    ],
    ids=["latin-1", "high-bytes", "utf-8-suffix", "wrong", "empty", "missing"],
)
async def test_a_wrong_or_malformed_token_gets_401_never_500(header: bytes | None) -> None:
    async with actor_host(TOKEN) as port:
        assert await status_of(port, header) == 401


async def test_the_right_token_passes_and_health_needs_none() -> None:
    async with actor_host(TOKEN) as port:
        assert await status_of(port, TOKEN.encode()) == 200
        assert await status_of(port, None, "/healthz") != 401


async def test_a_non_ascii_configured_token_matches_its_utf8_bytes() -> None:
    token = "t\u00f6ken-\u65e5\u672c"
    async with actor_host(token) as port:
        assert await status_of(port, token.encode()) == 200
        assert await status_of(port, token.encode()[:-1]) == 401
        assert await status_of(port, "t\u00f6ken-".encode("latin-1")) == 401
