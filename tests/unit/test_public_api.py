"""The public surface: one error face, and the names DESIGN.md promises."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import sekiban
import sekiban.errors


def error_classes() -> dict[str, type]:
    return {
        name: value
        for name, value in vars(sekiban.errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "sekiban.errors"
    }


def test_every_error_is_exported_from_sekiban_and_only_from_the_errors_module() -> None:
    errors = error_classes()
    exported = {n for n in sekiban.__all__ if n.endswith("Error")}
    assert exported == set(errors)
    for name, cls in errors.items():
        assert getattr(sekiban, name) is cls
        assert issubclass(cls, sekiban.SekibanError)


def test_no_other_module_defines_an_error_a_caller_can_catch() -> None:
    outside = []
    for module_info in pkgutil.walk_packages(sekiban.__path__, "sekiban."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, sekiban.SekibanError)
                and value.__module__ == module.__name__
                and module.__name__ != "sekiban.errors"
            ):
                outside.append(f"{module.__name__}.{name}")
    assert outside == []


def test_the_names_design_promises_are_importable() -> None:
    for name in [
        "PartitionKeys",
        "SortableUniqueId",
        "EventPayload",
        "AggregatePayload",
        "EmptyAggregatePayload",
        "Event",
        "EventMetadata",
        "Aggregate",
        "AggregateProjector",
        "Command",
        "CommandContext",
        "CommandResponse",
        "MultiProjector",
        "Query",
        "ListQuery",
        "DomainTypes",
        "SekibanExecutor",
        "ConcurrencyError",
        "SekibanError",
    ]:
        assert name in sekiban.__all__, name
