"""An actor host that dies mid-reply: it sends the status line, headers and the first
bytes of the body of every actor method call, then drops the connection.

Run by uvicorn next to a real daprd, it shows what daprd passes on to the caller when
an actor host goes away in the middle of a reply (as a killed host does).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

CONFIG = json.dumps({"entities": ["DaprAggregateActor"], "actorIdleTimeout": "1h"}).encode()
PARTIAL_BODY = b'{"ok": {"partition_keys": "'
DECLARED_LENGTH = 200


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if "/method/" in path:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(DECLARED_LENGTH).encode())],
            }
        )
        await send({"type": "http.response.body", "body": PARTIAL_BODY, "more_body": True})
        return  # uvicorn closes the connection: the reply is cut short
    body = CONFIG if path == "/dapr/config" else b"{}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
