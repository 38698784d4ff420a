"""Every ```python block in the README and docs/ runs as written.

Blocks of one file run in order in one namespace; afterwards every `test_*` function
they defined is called (awaited if async). A block preceded by a line
`<!-- not runnable: <reason> -->` is skipped, and must say why.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALL_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
PAGES = [page for page in ALL_PAGES if "```python" in page.read_text()]
BLOCK = re.compile(r"(<!-- not runnable: [^>]+-->\s*)?```python\n(.*?)```", re.S)


def runnable_blocks(page: Path) -> list[str]:
    return [code for marker, code in BLOCK.findall(page.read_text()) if not marker]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_code_blocks_run(page: Path) -> None:
    blocks = runnable_blocks(page)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    exec(compile("\n".join(blocks), str(page), "exec", dont_inherit=True), namespace)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            result = value()
            if inspect.iscoroutine(result):
                asyncio.run(result)


def test_every_unrunnable_block_says_why() -> None:
    for page in ALL_PAGES:
        for marker in re.findall(r"<!-- not runnable:([^>]*)-->", page.read_text()):
            assert marker.strip(), f"{page}: a not-runnable block without a reason"
