# sekiban: `make demo` and `make test` work on a fresh machine; everything they need is
# installed by the targets below (venv, Python packages, Debian services, npm server).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint docs unit services services-stop dapr bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all,dev,bench]"
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy

# The docs site; --strict turns broken links and API references into failures.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

services:
	scripts/services.sh start postgres cosmos

services-stop:
	scripts/services.sh stop

# daprd and placement, built from tools/dapr once and cached under ~/.cache/sekiban.
dapr:
	scripts/build-dapr.sh >/dev/null

# Every test, with the real services: a missing service fails the run, never skips it.
test: $(STAMP) lint docs services dapr
	eval "$$(scripts/services.sh env)" && \
	SEKIBAN_DAPR_BIN_DIR="$$(scripts/build-dapr.sh | tail -n1)" \
	SEKIBAN_REQUIRE_SERVICES=1 $(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Every benchmark suite on every store (about 20 minutes); results and plots go to
# benchmarks/results/, the plots also to docs/img/ for the docs site.
bench: $(STAMP) services
	eval "$$(scripts/services.sh env)" && $(PY) -m benchmarks --images docs/img

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
