"""SekibanSettings from the environment and .env, validated with clear errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sekiban import ConfigurationError
from sekiban.limits import CommandLimits
from sekiban.retry import CONFLICT_RETRY
from sekiban.settings import SekibanSettings
from sekiban.snapshot import HybridSnapshotStrategy, SnapshotConfiguration
from sekiban.snapshot.config import SnapshotStrategyFactory


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SEKIBAN_* variable or .env of the machine running the tests leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith("SEKIBAN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_build_the_library_defaults() -> None:
    settings = SekibanSettings()
    assert settings.store_url.get_secret_value() == "sqlite:///sekiban.db"
    assert settings.snapshot_configuration() == SnapshotConfiguration()
    assert settings.command_limits() == CommandLimits()
    assert settings.conflict_retry() == CONFLICT_RETRY


def test_environment_variables_set_every_runtime_value(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SEKIBAN_STORE_URL": "postgresql://app:pw@db/app?schema=es",
        "SEKIBAN_SNAPSHOT_STRATEGY": "hybrid",
        "SEKIBAN_SNAPSHOT_COUNT": "20",
        "SEKIBAN_SNAPSHOT_INTERVAL": "2.5",
        "SEKIBAN_SNAPSHOT_SIGNING_KEY": "k2:" + "n" * 32,
        "SEKIBAN_SNAPSHOT_ACCEPTED_KEYS": "k1:" + "o" * 32,
        "SEKIBAN_MAX_PAYLOAD_BYTES": "1000",
        "SEKIBAN_MAX_EVENTS_PER_COMMAND": "5",
        "SEKIBAN_MAX_COMMAND_BYTES": "4000",
        "SEKIBAN_CONFLICT_RETRY_ATTEMPTS": "3",
        "SEKIBAN_CONFLICT_RETRY_BASE_DELAY": "0.05",
        "SEKIBAN_CONFLICT_RETRY_MAX_DELAY": "PT2S",
        "SEKIBAN_ACTOR_IDLE_TIMEOUT": "60",
    }.items():
        monkeypatch.setenv(name, value)
    settings = SekibanSettings()
    config = settings.snapshot_configuration()
    assert config.time_interval == timedelta(seconds=2.5)
    strategy = SnapshotStrategyFactory.create(config)
    assert isinstance(strategy, HybridSnapshotStrategy)
    assert config.signing is not None and config.signing.key_id == "k2"
    assert set(config.signing.accepted) == {"k1", "k2"}
    assert settings.command_limits() == CommandLimits(1000, 5, 4000)
    retry = settings.conflict_retry()
    assert (retry.attempts, retry.base_delay, retry.max_delay) == (
        3,
        timedelta(milliseconds=50),
        timedelta(seconds=2),
    )
    assert settings.actor_idle_timeout == timedelta(minutes=1)
    assert "pw" not in repr(settings) and "nnnn" not in repr(settings)


def test_a_dot_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("SEKIBAN_STORE_URL=memory://\nSEKIBAN_SNAPSHOT_COUNT=7\n")
    assert SekibanSettings().snapshot_count == 7
    assert SekibanSettings().store_url.get_secret_value() == "memory://"
    monkeypatch.setenv("SEKIBAN_SNAPSHOT_COUNT", "8")
    assert SekibanSettings().snapshot_count == 8
    other = tmp_path / "prod.env"
    other.write_text("SEKIBAN_SNAPSHOT_STRATEGY=none\n")
    assert SekibanSettings(_env_file=other).snapshot_strategy == "none"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SEKIBAN_STORE_URL", "mysql://db/app", "SEKIBAN_STORE_URL: unknown store URL scheme"),
        ("SEKIBAN_SNAPSHOT_COUNT", "0", "SEKIBAN_SNAPSHOT_COUNT: Input should be greater"),
        ("SEKIBAN_SNAPSHOT_INTERVAL", "soon", "SEKIBAN_SNAPSHOT_INTERVAL"),
        ("SEKIBAN_SNAPSHOT_STRATEGY", "weekly", "SEKIBAN_SNAPSHOT_*: unknown snapshot strategy"),
        ("SEKIBAN_SNAPSHOT_SIGNING_KEY", "no-colon", "SEKIBAN_SNAPSHOT_*"),
        ("SEKIBAN_CONFLICT_RETRY_MAX_DELAY", "-1", "SEKIBAN_CONFLICT_RETRY_*: max_delay"),
        ("SEKIBAN_MAX_EVENTS_PER_COMMAND", "-3", "SEKIBAN_MAX_EVENTS_PER_COMMAND"),
    ],
)
def test_invalid_values_raise_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=message.replace("*", r"\*")):
        SekibanSettings()


def test_a_bad_secret_is_not_repeated_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEKIBAN_STORE_URL", "postgresql://u:hunter2@db:99999/app")
    with pytest.raises(ConfigurationError) as error:
        SekibanSettings()
    assert "hunter2" not in str(error.value)


async def test_open_store_opens_the_url_with_the_cosmos_key_only_for_cosmos(
    tmp_path: Path,
) -> None:
    settings = SekibanSettings(store_url="memory://", cosmos_key="a2V5")  # type: ignore[arg-type]
    async with await settings.open_store() as stores:
        assert stores.events is not None


def test_time_interval_is_a_timedelta_and_milliseconds_stay_accepted() -> None:
    assert SnapshotConfiguration(time_interval_ms=1500).time_interval == timedelta(seconds=1.5)
    assert SnapshotConfiguration(time_interval=timedelta(seconds=3)).time_interval_ms is None
    with pytest.raises(ConfigurationError, match="not both"):
        SnapshotConfiguration(time_interval=timedelta(seconds=3), time_interval_ms=1000)
    with pytest.raises(ConfigurationError, match="positive timedelta"):
        SnapshotConfiguration(time_interval=timedelta(0))
