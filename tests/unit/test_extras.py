"""A module whose extra is not installed says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sekiban import MissingExtraError, SekibanError
from sekiban._extras import require_extra

# Each case runs in a fresh interpreter where the driver "is not installed": a None
# entry in sys.modules makes importing it raise ModuleNotFoundError, as if it were absent.
IMPORT_WITHOUT = """
import sys
sys.modules[{missing!r}] = None
try:
    import {module}
except ImportError as error:
    print(type(error).__name__, error.name, error, sep="|")
"""


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("sekiban.stores.postgres", "asyncpg", "postgres"),
        ("sekiban.stores.cosmos", "azure", "cosmos"),
        ("sekiban.dapr", "dapr", "dapr"),
        ("sekiban.testing.actors", "dapr", "testing"),
        ("sekiban.cli", "typer", "cli"),
        ("sekiban.fastapi", "fastapi", "fastapi"),
    ],
)
def test_a_missing_driver_names_the_extra_to_install(module: str, missing: str, extra: str) -> None:
    code = IMPORT_WITHOUT.format(missing=missing, module=module)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    kind, name, message = done.stdout.strip().split("|")
    assert (kind, name) == ("MissingExtraError", missing)
    assert f"pip install 'sekiban[{extra}]'" in message


def test_the_sekiban_command_says_it_needs_the_cli_extra() -> None:
    with pytest.raises(MissingExtraError) as caught, require_extra("cli", "the sekiban command"):
        raise ModuleNotFoundError("No module named 'typer'", name="typer")
    assert str(caught.value) == (
        "the sekiban command needs the 'cli' extra (typer is not installed): "
        "pip install 'sekiban[cli]'"
    )
    assert isinstance(caught.value, SekibanError | ImportError)


def test_a_missing_sekiban_module_is_not_blamed_on_an_extra() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, require_extra("cli", "the sekiban command"):
        raise ModuleNotFoundError("No module named 'sekiban.nope'", name="sekiban.nope")
    assert not isinstance(caught.value, MissingExtraError)
