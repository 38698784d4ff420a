"""The order saga's domain as Dapr actors, with the saga's timeouts fired by reminders.

    uvicorn tests.integration.saga_dapr_host:app

SEKIBAN_STORE_URL names the event store; SAGA_PAYMENT_WINDOW (seconds) shortens the
saga's payment window so a test sees its timeout fire.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta

from examples.order_saga import Fulfilment, OrderFulfilment, order_domain
from sekiban import Event, EventPayload
from sekiban.dapr.app import create_actor_app
from sekiban.reactions import Step
from sekiban.settings import SekibanSettings
from sekiban.stores import EventStore


class QuickFulfilment(OrderFulfilment):
    """The order saga with a payment window of `window`."""

    name = "order-fulfilment"

    def __init__(self, window: timedelta) -> None:
        self.window = window

    def handle(self, state: Fulfilment, event: Event[EventPayload], now: datetime) -> Step | None:
        step = super().handle(state, event, now)
        if step is None or not step.schedule:
            return step
        shorter = [dataclasses.replace(t, after=self.window) for t in step.schedule]
        return dataclasses.replace(step, schedule=shorter)


def payment_window() -> timedelta:
    return timedelta(seconds=float(os.environ.get("SAGA_PAYMENT_WINDOW", "900")))


async def open_event_store() -> EventStore:
    return (await SekibanSettings().open_store()).events


app = create_actor_app(
    order_domain(),
    open_event_store,
    process_managers=[QuickFulfilment(payment_window())],
)
