"""Keyed snapshot integrity: HMAC-SHA-256 over a snapshot's canonical stored form.

A CRC catches accidents; a signature catches a snapshot written by someone who can
write the snapshot store (or the actor state) but does not hold the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from sekiban.errors import ConfigurationError
from sekiban.snapshot.types import AggregateSnapshot, RejectionReason, SnapshotRejection

MIN_KEY_BYTES = 16
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def canonical_form(snapshot: AggregateSnapshot) -> bytes:
    """The bytes a signature covers: everything that decides the restored aggregate.

    A JSON header (projector name and version, partition keys, version, last sortable
    id, payload type, format version, encoding, schema fingerprint if any) on one line,
    then the payload bytes as stored. JSON never holds a raw newline, so the header ends
    unambiguously. `taken_at` and `events_since_previous` are left out: they only steer
    when the next snapshot is taken, and their stored spelling differs between stores.
    """
    m = snapshot.metadata
    header = json.dumps(
        [
            "sekiban-snapshot",
            m.projector_name,
            m.projector_version,
            str(snapshot.partition_keys),
            snapshot.version,
            snapshot.last_sortable_unique_id,
            m.payload_type,
            m.format_version,
            m.encoding.value,
            # Only when set, so signatures made before schema fingerprints still verify.
            *([m.schema_fingerprint] if m.schema_fingerprint else []),
        ],
        separators=(",", ":"),
    ).encode()
    return header + b"\n" + snapshot.payload


@dataclass(frozen=True)
class SnapshotSigning:
    """The keys that sign snapshots and the keys accepted when reading them.

    New snapshots are signed with `key` under `key_id`. A snapshot is accepted when its
    signature was made with the current key or one in `accepted` (key id -> key: the
    previous keys, kept while their snapshots are rotated out). Keys are bytes of at
    least 16 (use 32 random bytes); `repr` shows key ids only, never keys. Invalid
    values raise `ConfigurationError`.
    """

    key_id: str
    key: bytes = field(repr=False)
    accepted: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        keys = {**self.accepted, self.key_id: self.key}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"snapshot key ids are 1-64 of [A-Za-z0-9._-], got {key_id!r}"
                )
            if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"snapshot key {key_id!r} must be at least {MIN_KEY_BYTES} bytes"
                )
        object.__setattr__(self, "accepted", MappingProxyType(keys))

    @classmethod
    def from_settings(cls, key: str, accepted: str = "") -> SnapshotSigning:
        """Keys as settings spell them: `key` is `"id:secret"`, `accepted` is
        `"id:secret,id:secret"` (the secrets' UTF-8 bytes are the keys)."""
        key_id, secret = _key_setting(key)
        old = dict(_key_setting(item) for item in accepted.split(",") if item.strip())
        return cls(key_id, secret, old)

    def __repr__(self) -> str:
        return f"SnapshotSigning(key_id={self.key_id!r}, accepted={sorted(self.accepted)!r})"

    def sign(self, snapshot: AggregateSnapshot) -> AggregateSnapshot:
        """`snapshot` with a signature by the current key."""
        signature = self.signature_of(canonical_form(snapshot))
        return replace(snapshot, metadata=replace(snapshot.metadata, signature=signature))

    def verify(self, snapshot: AggregateSnapshot) -> SnapshotRejection | None:
        """Why `snapshot`'s signature is not acceptable, or None when it is."""
        return self.check(snapshot.metadata.signature, canonical_form(snapshot))

    def signature_of(self, data: bytes) -> str:
        """`key-id:hex HMAC-SHA-256` of `data` by the current key (for any stored
        cache, e.g. a projection's state)."""
        return f"{self.key_id}:{_mac(self.key, data)}"

    def check(self, signature: str | None, data: bytes) -> SnapshotRejection | None:
        """Why `signature` is not an acceptable one of `data`, or None when it is."""
        if not signature:
            return SnapshotRejection(RejectionReason.UNSIGNED, "carries no signature")
        key_id, _, mac = signature.rpartition(":")
        key = self.accepted.get(key_id)
        if key is None:
            return SnapshotRejection(
                RejectionReason.UNKNOWN_KEY, f"signed with key {key_id!r}, not an accepted key"
            )
        if not hmac.compare_digest(mac.encode("ascii", "replace"), _mac(key, data).encode()):
            return SnapshotRejection(
                RejectionReason.BAD_SIGNATURE, f"signature by key {key_id!r} does not match"
            )
        return None


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _key_setting(text: str) -> tuple[str, bytes]:
    key_id, separator, secret = text.strip().partition(":")
    if not separator or not secret:
        raise ConfigurationError(
            "a snapshot key setting is 'key-id:secret'"
            + (f", got one for key id {key_id!r} without a secret" if separator else "")
        )
    return key_id, secret.encode()
