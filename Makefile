# Set-up and main commands. `make test` and `make run` install into .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-all run demo verify bench gpu-check lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# build the C++ trial kernel now (about 15 s, once per environment), not in the first l2l-demo or test
	$(BIN)/python -c "from l2l.native import native_status; print('l2l:', native_status())"
	touch $(STAMP)

test: install   # the fast tier (4–7 minutes on 2 cores)
	$(BIN)/python -m pytest -q --durations=15

test-all: install   # every test: also the slow tier (torchrun, kill -9, signals, sweeps, W&B, Optuna, builds)
	$(BIN)/python -m pytest -q -m ''

RUN_DIR ?= outputs/arm_one_shot/make_run

run: install
	# outer.resume=auto: a second `make run` continues (or, finished, keeps) the first; RUN_DIR=... for a new one
	$(BIN)/l2l-train experiment=arm_one_shot eval.enabled=false hydra.run.dir=$(RUN_DIR) outer.resume=auto
	$(BIN)/l2l-eval $(RUN_DIR) --threads 2

demo: install
	$(BIN)/l2l-demo hydra.run.dir=outputs/demo/make_demo

verify: install
	$(BIN)/l2l-verify

bench: install   # writes outputs/bench/bench.json and scaling.png
	$(BIN)/l2l-bench --out outputs/bench

gpu-check: install   # on a CUDA machine: pytest -m cuda, the fixture in float64 on the GPU, l2l-bench meta at two sizes
	$(BIN)/python -m l2l.outer_loop.bench.gpu_check --out outputs/gpu_check.json

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
