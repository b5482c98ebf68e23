# Set-up and main commands. `make test` and `make run` install into .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-all run verify bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ''

run: install
	$(BIN)/l2l-verify
	$(BIN)/l2l-bench --quick

verify: install
	$(BIN)/l2l-verify

bench: install
	$(BIN)/l2l-bench

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
