"""A membership domain in two releases, for reading old history with new code.

Release 1 wrote `MemberJoined {full_name, referrer}` and `PointsEarned {amount: str,
note}`. Release 2 splits the name and adds a tier (`MemberJoined` at schema version 2,
`referrer` removed), and renames `PointsEarned` to `PointsAwarded` with `amount` retyped
to int `points` and `note` renamed to `reason`. Both releases call their projector
"member" at projector version "1": only the event schemas changed.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from sekiban import (
    AggregatePayload,
    AggregateProjector,
    Command,
    CommandContext,
    DomainTypes,
    EmptyAggregatePayload,
    Event,
    EventPayload,
    PartitionKeys,
)

NAME = "member"


def member_keys(member_id: uuid.UUID) -> PartitionKeys:
    return PartitionKeys.existing(member_id, NAME)


# --- release 1 --------------------------------------------------------------------


class OldMemberJoined(EventPayload):
    full_name: str
    referrer: str


class OldPointsEarned(EventPayload):
    amount: str
    note: str


class OldMember(AggregatePayload):
    full_name: str
    points: int = 0


class OldMemberProjector(AggregateProjector):
    name = NAME

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        match payload, event.payload:
            case EmptyAggregatePayload(), OldMemberJoined(full_name=name):
                return OldMember(full_name=name)
            case OldMember(), OldPointsEarned(amount=amount):
                return payload.evolve(points=payload.points + int(amount))
        return payload


class OldJoin(Command):
    projector = OldMemberProjector
    member_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    full_name: str
    referrer: str = "web"

    def partition_keys(self) -> PartitionKeys:
        return member_keys(self.member_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return OldMemberJoined(full_name=self.full_name, referrer=self.referrer)


class OldEarn(Command):
    projector = OldMemberProjector
    member_id: uuid.UUID
    amount: str
    note: str

    def partition_keys(self) -> PartitionKeys:
        return member_keys(self.member_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return OldPointsEarned(amount=self.amount, note=self.note)


def old_domain() -> DomainTypes:
    return (
        DomainTypes(OldMemberProjector, OldJoin, OldEarn)
        .register_as(OldMemberJoined, "MemberJoined")
        .register_as(OldPointsEarned, "PointsEarned")
        .register_as(OldMember, "Member")
    )


# --- release 2 --------------------------------------------------------------------


class MemberJoined(EventPayload):
    schema_version = 2

    first_name: str
    last_name: str
    tier: str = "basic"


class PointsAwarded(EventPayload):
    schema_version = 2

    points: int
    reason: str


class Member(AggregatePayload):
    first_name: str
    last_name: str
    tier: str
    points: int = 0
    reasons: tuple[str, ...] = ()


class MemberProjector(AggregateProjector):
    name = NAME

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        match payload, event.payload:
            case EmptyAggregatePayload(), MemberJoined() as joined:
                return Member(
                    first_name=joined.first_name, last_name=joined.last_name, tier=joined.tier
                )
            case Member(), PointsAwarded(points=points, reason=reason):
                return payload.evolve(
                    points=payload.points + points, reasons=(*payload.reasons, reason)
                )
        return payload


class Award(Command):
    projector = MemberProjector
    member_id: uuid.UUID
    points: int
    reason: str

    def partition_keys(self) -> PartitionKeys:
        return member_keys(self.member_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return PointsAwarded(points=self.points, reason=self.reason)


def split_full_name(data: dict[str, Any]) -> dict[str, Any]:
    first, _, last = data.pop("full_name").partition(" ")
    return {**data, "first_name": first, "last_name": last}


def points_as_int(data: dict[str, Any]) -> dict[str, Any]:
    return {"points": int(data["amount"]), "reason": data["note"]}


def new_domain() -> DomainTypes:
    domain = DomainTypes(MemberJoined, PointsAwarded, Member, MemberProjector, Award)
    domain.alias(PointsAwarded, "PointsEarned")
    domain.add_upcaster(MemberJoined, 1, split_full_name)
    domain.add_upcaster(PointsAwarded, 1, points_as_int)
    return domain
