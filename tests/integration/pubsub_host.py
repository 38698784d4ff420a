"""A Dapr app that subscribes to topic `sekiban` of pub/sub `events` and appends every
message it gets (the CloudEvent, as JSON) to the file named by RECEIVED_FILE.

    uvicorn tests.integration.pubsub_host:app
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/dapr/subscribe")
async def subscriptions() -> list[dict[str, str]]:
    return [{"pubsubname": "events", "topic": "sekiban", "route": "/received"}]


@app.post("/received")
async def received(request: Request) -> dict[str, Any]:
    message = await request.json()
    with open(os.environ["RECEIVED_FILE"], "a") as file:
        file.write(json.dumps(message) + "\n")
    return {"status": "SUCCESS"}
