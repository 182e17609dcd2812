# dynasoar: a newcomer needs only `make demo` and `make test`; both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint typecheck clean

install: $(STAMP)
	@scripts/install-system.sh --check

$(STAMP): pyproject.toml scripts/install-system.sh
	scripts/install-system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/python -c "import lxml.etree, xmlsec, spyne, zeep, httptools"
	touch $(STAMP)

demo: install
	$(BIN)/dynasoar demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/dynasoar bench

lint: install
	$(BIN)/ruff check src tests deploy
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache
