# dynasoar: a newcomer needs only `make demo` and `make test`; both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VM_ECHO    := deploy/services/vm-echo
VM_COUNTER := deploy/services/vm-counter
VM_STAMP   := $(VM_ECHO)/build/.built
VM_SOURCES := $(VM_ECHO)/build.sh $(VM_ECHO)/VmEcho.wsdl $(shell find $(VM_ECHO)/guest -type f) \
              $(VM_COUNTER)/VmCounter.wsdl $(shell find $(VM_COUNTER)/guest -type f)

.PHONY: install vm-image demo test soak bench interop lint typecheck clean

install: $(STAMP) vm-image
	@scripts/install-system.sh --check
	@scripts/install-vm.sh --check
	@scripts/install-interop.sh

$(STAMP): pyproject.toml scripts/install-system.sh scripts/install-vm.sh
	scripts/install-system.sh
	scripts/install-vm.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/python -c "import lxml.etree, xmlsec, spyne, zeep, httptools"
	scripts/sandbox-access.sh "$$($(BIN)/python -c 'import sys; print(sys.executable)')" $(BIN)/python src
	touch $(STAMP)

# The vm-echo and vm-counter guests and their service packages (deploy/services/vm-echo/build/,
# deploy/services/vm-counter/build/), rebuilt only when their recipe changes; needs the Debian
# packages scripts/install-vm.sh installs.
vm-image: $(VM_STAMP)

$(VM_STAMP): $(VM_SOURCES) | $(STAMP)
	rm -f $@
	$(VM_ECHO)/build.sh
	touch $@

demo: install
	$(BIN)/dynasoar demo

test: install
	$(BIN)/python -m pytest -m "not soak"

# The longer variants of paths make test covers more briefly (kept out of it for its time).
soak: install
	$(BIN)/python -m pytest -m soak

bench: install
	$(BIN)/dynasoar bench

# The interop suite alone (make test runs it too), then the README's matrix from its results
# (rewritten even when a cell failed, so the table shows it; the exit status is pytest's).
interop: install
	$(BIN)/python -m pytest tests/interop; status=$$?; \
	$(BIN)/python scripts/interop-matrix.py && exit $$status

lint: install
	$(BIN)/ruff check src tests deploy
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache $(VM_ECHO)/build \
	    $(VM_COUNTER)/build
