# laclip_lite: `make demo` runs the main job on the embedded world, `make test` runs the test suite (`make test-fast`
# the tests that start no process), `make lint` runs ruff (the rules are in pyproject.toml). Each creates .venv
# when missing. On a machine without CUDA, torch is pinned to the local CPU wheel.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv samples bench clean strip

venv: $(STAMP)

# The project's packages go in with uv (measured on 2 cores: 1 min 17 s for the whole setup against pip's 2 min 49 s,
# the same 160 packages at the same versions); uv reads no pip.conf, so where packages must come from a private
# index: `make venv INSTALL="$(BIN)/pip install -q"`.
INSTALL ?= $(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q "$(TORCH_CPU)"; fi
	@test -x $(BIN)/uv || $(BIN)/pip install -q uv
	$(INSTALL) -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (laclip_lite)" >/dev/null
	@touch $(STAMP)

demo: venv
	$(BIN)/laclip-lite demo --out runs/demo

test: venv
	$(BIN)/python -m pytest -q

# The edit loop: leaves out the tests marked slow (they start kernels or subprocesses; see tests/conftest.py).
test-fast: venv
	$(BIN)/python -m pytest -q --fast

lint: venv
	$(BIN)/ruff check .

# The lessons are edited as notebooks (JupyterLab); run this before committing (make test checks it).
NOTEBOOKS := notebooks/*.ipynb laclip_lite/course/assignments/*.ipynb
strip: venv
	$(BIN)/python -m laclip_lite.course.strip $(NOTEBOOKS)

samples: venv
	LACLIP_LITE=$(BIN)/laclip-lite ./data_samples/make_samples.sh

bench: venv
	$(MAKE) -f Makefile.bench bench
	$(BIN)/python benchmarks/mt_step.py

clean:
	rm -rf runs .pytest_cache
