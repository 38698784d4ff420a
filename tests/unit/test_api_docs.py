"""Every public name has a docstring and a place in the API reference (docs/api.md).

docs/api.md renders objects with mkdocstrings (`::: module` or `::: module.Name`); a
name counts as rendered when its defining module, or the name itself, is listed there.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = [
    "sekiban",
    "sekiban.stores",
    "sekiban.snapshot",
    "sekiban.projections",
    "sekiban.dapr",
    "sekiban.testing",
    "sekiban.fastapi",
    "sekiban.settings",
    "sekiban.reactions",
]


def public_names(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:  # a module without __all__: what it defines without a leading _
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module_name
        ]
    return [(name, getattr(module, name)) for name in names]


PUBLIC = sorted({(m, n): v for m in PUBLIC_MODULES for n, v in public_names(m)}.items())
RENDERED = set(re.findall(r"^::: ([\w.]+)", (ROOT / "docs" / "api.md").read_text(), re.M))


@pytest.mark.parametrize("where, value", PUBLIC, ids=[f"{m}.{n}" for (m, n), _ in PUBLIC])
def test_public_name_has_a_docstring_and_is_rendered(where: tuple[str, str], value: object) -> None:
    module_name, name = where
    doc = value.__doc__ if inspect.isclass(value) else inspect.getdoc(value)
    assert doc and doc.strip(), f"{module_name}.{name} has no docstring"
    defined_in = getattr(value, "__module__", module_name)
    qualified = f"{defined_in}.{getattr(value, '__qualname__', name)}"
    # A package that re-exports a name in its __all__ renders it too.
    packages = [defined_in.rsplit(".", n)[0] for n in range(1, defined_in.count(".") + 1)]
    exporters = {p for p in packages if name in getattr(importlib.import_module(p), "__all__", [])}
    assert defined_in in RENDERED or qualified in RENDERED or exporters & RENDERED, (
        f"{module_name}.{name} ({qualified}) is not in docs/api.md"
    )
