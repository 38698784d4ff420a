"""SekibanSettings: sekiban's configuration read from SEKIBAN_* variables and `.env`.

Needs the `settings` extra (pydantic-settings). The settings only describe; the methods
build the runtime values (`snapshot_configuration()`, `command_limits()`,
`conflict_retry()`, `open_store()`), so two differently configured executors in one
process never meet.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from sekiban._extras import require_extra
from sekiban.errors import ConfigurationError
from sekiban.limits import (
    DEFAULT_MAX_COMMAND_BYTES,
    DEFAULT_MAX_EVENTS_PER_COMMAND,
    DEFAULT_MAX_PAYLOAD_BYTES,
    CommandLimits,
)
from sekiban.retry import CONFLICT_RETRY, RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.snapshot.signing import SnapshotSigning
from sekiban.stores.urls import Stores, open_store, parse_store_url

with require_extra("settings", "sekiban.settings"):
    from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SEKIBAN_"


class SekibanSettings(BaseSettings):
    """sekiban's settings. Each field is read from `SEKIBAN_<FIELD>` (any case), then
    from a `.env` file in the working directory (`_env_file=` names another one);
    keyword arguments win over both.

    Durations (`snapshot_interval`, `conflict_retry_base_delay`, ...) are `timedelta`:
    in the environment a number of seconds (`60`, `0.25`) or ISO 8601 (`PT1M`).
    Secrets (`store_url`, which may hold a password, `cosmos_key` and the snapshot
    keys) are `SecretStr`, hidden from `repr` and logs. Invalid values raise
    `ConfigurationError` naming the variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    store_url: SecretStr = SecretStr("sqlite:///sekiban.db")
    """Where events and snapshots go (see `sekiban.stores.urls`)."""
    cosmos_key: SecretStr | None = None
    """The Cosmos DB account key, for a `cosmos://` store URL."""

    snapshot_strategy: str = "count"
    snapshot_count: int = Field(50, ge=1)
    snapshot_interval: timedelta = timedelta(minutes=1)
    snapshot_signing_key: SecretStr | None = None
    """`key-id:secret`: sign snapshots and refuse unsigned ones."""
    snapshot_accepted_keys: SecretStr = SecretStr("")
    """`key-id:secret,...`: earlier keys still accepted while rotating."""

    max_payload_bytes: int = Field(DEFAULT_MAX_PAYLOAD_BYTES, ge=1)
    max_events_per_command: int = Field(DEFAULT_MAX_EVENTS_PER_COMMAND, ge=1)
    max_command_bytes: int = Field(DEFAULT_MAX_COMMAND_BYTES, ge=1)

    conflict_retry_attempts: int = Field(CONFLICT_RETRY.attempts, ge=1)
    conflict_retry_base_delay: timedelta = CONFLICT_RETRY.base_delay
    conflict_retry_max_delay: timedelta = CONFLICT_RETRY.max_delay

    actor_idle_timeout: timedelta = timedelta(minutes=15)
    """How long a Dapr aggregate actor stays active without calls."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            # Built from locations and messages only: the input may be a secret.
            problems = "; ".join(
                f"{ENV_PREFIX}{'_'.join(map(str, e['loc'])).upper()}: {_message(e['msg'])}"
                if e["loc"]
                else _message(e["msg"])
                for e in error.errors()
            )
            raise ConfigurationError(f"invalid sekiban settings: {problems}") from None

    @field_validator(
        "snapshot_interval",
        "conflict_retry_base_delay",
        "conflict_retry_max_delay",
        "actor_idle_timeout",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # pydantic reads numbers as seconds but not numeric text, which is what the
        # environment holds.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value  # ISO 8601 (PT1M) and [-][DD]D[,][HH:MM:]SS[.ffffff]
        return value

    @field_validator("store_url")
    @classmethod
    def _check_store_url(cls, url: SecretStr) -> SecretStr:
        parse_store_url(url.get_secret_value())
        return url

    @model_validator(mode="after")
    def _check_runtime_values(self) -> SekibanSettings:
        # Build them once, so a bad strategy or key fails when the settings are read.
        for prefix, build in (
            ("SEKIBAN_SNAPSHOT_*", self.snapshot_configuration),
            ("SEKIBAN_CONFLICT_RETRY_*", self.conflict_retry),
            ("SEKIBAN_MAX_*", self.command_limits),
        ):
            try:
                build()
            except ConfigurationError as error:
                raise ValueError(f"{prefix}: {error}") from None
        return self

    def snapshot_configuration(self, **changes: Any) -> SnapshotConfiguration:
        """The `SnapshotConfiguration` these settings describe; `changes` (e.g.
        `overrides=`, `strategies=`) are passed on as they are."""
        signing = None
        if self.snapshot_signing_key is not None:
            signing = SnapshotSigning.from_settings(
                self.snapshot_signing_key.get_secret_value(),
                self.snapshot_accepted_keys.get_secret_value(),
            )
        values: dict[str, Any] = {
            "strategy": self.snapshot_strategy,
            "count_threshold": self.snapshot_count,
            "time_interval": self.snapshot_interval,
            "signing": signing,
        }
        return SnapshotConfiguration(**{**values, **changes})

    def command_limits(self) -> CommandLimits:
        """The `CommandLimits` these settings describe."""
        return CommandLimits(
            max_payload_bytes=self.max_payload_bytes,
            max_events=self.max_events_per_command,
            max_command_bytes=self.max_command_bytes,
        )

    def conflict_retry(self) -> RetryPolicy:
        """The `RetryPolicy` for commands that lost a race with another writer."""
        return RetryPolicy(
            attempts=self.conflict_retry_attempts,
            base_delay=self.conflict_retry_base_delay,
            max_delay=self.conflict_retry_max_delay,
        )

    async def open_store(self, **options: Any) -> Stores:
        """`sekiban.stores.open_store(store_url, **options)`, with `cosmos_key` as the key
        of a Cosmos DB store. Use as `async with await settings.open_store() as stores:`."""
        url = self.store_url.get_secret_value()
        if self.cosmos_key is not None and parse_store_url(url).kind == "cosmos":
            options.setdefault("key", self.cosmos_key.get_secret_value())
        return await open_store(url, **options)


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")
