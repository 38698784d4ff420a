"""Run the ```python blocks of one README/docs page, as a reader would.

Blocks of one page run in order in one namespace; afterwards every `test_*` function
they defined is called (awaited if async). A block preceded by a line
`<!-- not runnable: <reason> -->` is not run, and must say why.

Standard library only: `tests/integration/test_docs_installed.py` copies this file into
a directory outside the repository and runs it with a fresh virtualenv's Python
(`python doc_blocks.py PAGE...`), where only the installed wheel is importable.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import types
from pathlib import Path

BLOCK = re.compile(r"(<!-- not runnable:([^>]*)-->\s*)?```(\w*)\n(.*?)```", re.S)


def runnable_blocks(text: str) -> list[str]:
    """The page's python blocks that are not marked not runnable."""
    blocks = BLOCK.findall(text)
    return [code for marker, _, lang, code in blocks if lang == "python" and not marker]


def not_run_reasons(text: str) -> list[str]:
    """The reason given for each block marked not runnable (empty if none was given)."""
    return [reason.strip() for marker, reason, _, _ in BLOCK.findall(text) if marker]


def run_page(page: Path) -> None:
    # A module of its own, as a reader's script would be (pydantic looks up the module
    # of a class that parametrizes a generic model, e.g. `class Q(Query[int])`).
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    sys.modules[module.__name__] = module
    namespace: dict[str, object] = module.__dict__
    code = "\n".join(runnable_blocks(page.read_text()))
    exec(compile(code, str(page), "exec", dont_inherit=True), namespace)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            result = value()
            if inspect.iscoroutine(result):
                asyncio.run(result)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        run_page(Path(argument))
        print(f"ran {argument}")
