"""Every ```python block in the README and docs/ runs as written (tests/doc_blocks.py).

Here the blocks run in this interpreter, from the repository; the installed-wheel run,
outside the repository, is tests/integration/test_docs_installed.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_blocks import BLOCK, not_run_reasons, run_page

ROOT = Path(__file__).resolve().parents[2]
ALL_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
PAGES = [page for page in ALL_PAGES if "```python" in page.read_text()]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_code_blocks_run(page: Path) -> None:
    run_page(page)


def test_every_unrunnable_block_says_why() -> None:
    for page in ALL_PAGES:
        for reason in not_run_reasons(page.read_text()):
            assert reason, f"{page}: a not-runnable block without a reason"


def test_no_page_imports_the_repository_examples_package() -> None:
    # `examples/` is not in the wheel: a guide that imports it fails after pip install.
    for page in ALL_PAGES:
        for _, _, lang, code in BLOCK.findall(page.read_text()):
            if lang == "python":
                assert "from examples" not in code and "import examples" not in code, page
