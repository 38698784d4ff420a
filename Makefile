# sekiban: `make demo` and `make test` work on a fresh machine; everything they need is
# installed by the targets below (venv, Python packages, Debian services, npm server).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Where `make test` writes coverage data and the HTML report (data_file in pyproject.toml).
COVERAGE_DATA := .coverage-data

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
	$(BIN)/pyright --pythonpath $(PY)

# The docs site; --strict turns broken links and API references into failures.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

services:
	scripts/services.sh start postgres cosmos

services-stop:
	scripts/services.sh stop

# daprd, placement and scheduler, built from tools/dapr once and cached under ~/.cache/sekiban.
dapr:
	scripts/build-dapr.sh >/dev/null

# Every test, with the real services: a missing service fails the run, never skips it.
# The run is measured: branch coverage of src/sekiban, including the Python processes
# the tests start ([tool.coverage] in pyproject.toml). Each process writes its data file
# under .coverage-data/; they are combined into one report (HTML in .coverage-data/html),
# and the report fails the run below its `fail_under` floor.
test: $(STAMP) lint docs services dapr
	rm -rf $(COVERAGE_DATA)
	eval "$$(scripts/services.sh env)" && \
	SEKIBAN_DAPR_BIN_DIR="$$(scripts/build-dapr.sh | tail -n1)" \
	SEKIBAN_REQUIRE_SERVICES=1 $(PY) -m coverage run -m pytest -q
	$(PY) -m coverage combine --quiet
	$(PY) -m coverage html --quiet --fail-under=0
	$(PY) -m coverage report

# Unit tests only, unmeasured: the quick loop while editing.
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Every benchmark suite on every store (about 40 minutes); results and plots go to
# benchmarks/results/, the plots also to docs/img/ for the docs site (docs/performance.md
# shows them). Long runs belong here, never in `make test`.
bench: $(STAMP) services
	eval "$$(scripts/services.sh env)" && $(PY) -m benchmarks --images docs/img && \
	$(PY) -m benchmarks.concurrency && \
	$(PY) -m benchmarks.scale --images docs/img && \
	$(PY) -m benchmarks.profiling && \
	$(PY) -m benchmarks.projection_scale

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(COVERAGE_DATA)
