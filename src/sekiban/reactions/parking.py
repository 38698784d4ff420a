"""Parked events: what a subscriber set aside after its handler kept failing, kept in
order per sequence key (like Axon's sequenced dead-letter queue).

The first event of a key whose handler failed is the key's *head*: parked with its
error. While a key has a head, later events of that key are *held* behind it (not
handled, in order), so a process never sees its events out of order; events of other
keys keep flowing. Retrying the head releases the events held behind it, in order,
until one fails again: that one becomes the new head and the rest stay held behind it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ParkedItem:
    """An event (or due work) set aside: parked after its handler kept failing, or held
    behind the parked event `held_behind` (an event id) of the same sequence `key`.

    `position` is the event's global position (0 for due work such as a timeout); `key`
    is its sequence key (None: it holds nothing back); a held item has no `error` and
    no `attempts` of its own."""

    label: str
    position: int
    event_id: str
    event_type: str
    error: str
    attempts: int
    parked_at: datetime
    key: str | None = None
    held_behind: str = ""

    @property
    def held(self) -> bool:
        return bool(self.held_behind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "position": self.position,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "error": self.error,
            "attempts": self.attempts,
            "parked_at": self.parked_at.isoformat(),
            "key": self.key,
            "held_behind": self.held_behind,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParkedItem:
        return cls(**{**data, "parked_at": datetime.fromisoformat(data["parked_at"])})


class ParkedEvents:
    """A subscriber's parked and held items, in the order they were set aside."""

    def __init__(self, items: Iterable[ParkedItem] = ()) -> None:
        self.items = list(items)
        self._index()

    def _index(self) -> None:
        # Every event read asks whether its key is held: keep that a lookup.
        self._heads = {i.key: i for i in reversed(self.items) if i.key is not None and not i.held}

    def __iter__(self) -> Iterator[ParkedItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def head_of(self, key: str | None) -> ParkedItem | None:
        """The parked event holding `key` back, if any."""
        return None if key is None else self._heads.get(key)

    def add(self, item: ParkedItem) -> None:
        self.items.append(item)
        if item.key is not None and not item.held:
            self._heads.setdefault(item.key, item)

    def labels(self) -> set[str]:
        return {i.label for i in self.items}

    def take(self, event_ids: Collection[str] | None) -> list[list[ParkedItem]]:
        """Remove what a retry hands over again: each chosen head with the items held
        behind it, in order (all heads when `event_ids` is None; naming a held event
        chooses its head, as only the head can release it)."""
        heads = [i for i in self.items if not i.held]
        if event_ids is not None:
            named = {i.held_behind or i.event_id for i in self.items if i.event_id in event_ids}
            heads = [h for h in heads if h.event_id in named]
        chosen = {id(h) for h in heads}
        behind = {h.event_id for h in heads if h.event_id}
        queues = {h.event_id: [h] for h in heads if h.event_id}
        rest: list[ParkedItem] = []
        for item in self.items:
            if item.held and item.held_behind in behind:
                queues[item.held_behind].append(item)
            elif id(item) not in chosen:
                rest.append(item)
        self.items = rest
        self._index()
        return [queues[h.event_id] if h.event_id else [h] for h in heads]

    def put_back(self, failed: ParkedItem, held: list[ParkedItem]) -> None:
        """Park `failed` as the head of its key again, with `held` behind it."""
        self.add(failed)
        self.items += [held_behind(i, failed.event_id) for i in held]

    def to_list(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in self.items]


def held_behind(item: ParkedItem, head: str) -> ParkedItem:
    """`item` held behind the parked event `head` (no error, no attempts of its own)."""
    return replace(item, error="", attempts=0, held_behind=head)
