"""The README and docs/ code blocks run from the installed wheel, outside the repository.

A reader runs a guide after `pip install 'sekiban[...]'`: only the wheel is importable,
not the repository's `examples/` or `tests/`. This builds the wheel, installs it with
the extras the guides use into a fresh virtualenv (pip's download cache makes reruns
quick; a fresh machine needs only PyPI) and runs every page's blocks there, with the
working directory and PYTHONPATH outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.doc_blocks import not_run_reasons
from tests.unit.test_docs_examples import ALL_PAGES, PAGES, ROOT

pytestmark = pytest.mark.wheel

# The extras the guides use, and what they tell the reader to install beside them:
# httpx for FastAPI's TestClient (docs/fastapi.md), the OpenTelemetry SDK
# (docs/observability.md).
REQUIREMENTS = ["[all]", "httpx", "opentelemetry-sdk"]


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its Python."""
    base = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base), str(ROOT)], base)
    (wheel,) = base.glob("sekiban-*.whl")
    venv.create(base / "venv", with_pip=True)
    python = base / "venv" / "bin" / "python"
    extras, *others = REQUIREMENTS
    run([str(python), "-m", "pip", "install", "-q", f"{wheel}{extras}", *others], base)
    return python


def test_every_doc_block_runs_from_the_installed_wheel(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = tmp_path / "doc_blocks.py"
    shutil.copy(ROOT / "tests" / "doc_blocks.py", runner)
    # The service variables (SEKIBAN_*) pass through; nothing that points into the repo.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("COVERAGE_")
    }
    work = tmp_path / "reader"
    work.mkdir()
    check = [str(installed), "-c", "import importlib.util as u; print(u.find_spec('examples'))"]
    assert run(check, work, env).strip() == "None"
    output = run([str(installed), str(runner), *map(str, PAGES)], work, env)
    assert output.count("ran ") == len(PAGES)
    not_run = {
        str(page.relative_to(ROOT)): reasons
        for page in ALL_PAGES
        if (reasons := not_run_reasons(page.read_text()))
    }
    with capsys.disabled():  # reported on every run: a block not run is never silent
        print(f"\n{len(PAGES)} pages run from the wheel; blocks marked not runnable:")
        for page, reasons in not_run.items():
            print(f"  {page}: {len(reasons)} ({'; '.join(sorted(set(reasons)))})")
