# NodeWeaver developer entry points. `make demo` and `make test` are the README's quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-quick lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, from its pin (a CPU build on these machines), so nothing pulls a different build.
TORCH_PIN ?= torch==2.13.0

# spandrel (upscale models) without its torchvision requirement: PyPI's torchvision does not load beside a CPU
# torch build, and spandrel needs it only for LaMa/RestoreFormer (NodeWeaver stands in for the rest).
SPANDREL ?= spandrel==0.4.2

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[diffusion,ui]'
	$(BIN)/pip install --quiet --no-deps $(SPANDREL)

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,diffusion]'
	$(BIN)/pip install --quiet --no-deps $(SPANDREL)

# The main job, offline on embedded defaults: a sentence in, a validated workflow out, run end to end
# (with no checkpoint installed, on a tiny random-weight demo checkpoint written into the models folder).
REQUEST ?= 画一只在雪地里奔跑的红狐狸,512x384,步数12,种子7
demo: install
	$(BIN)/nodeweaver plan "$(REQUEST)" --run

lint: install-dev
	$(BIN)/ruff check .

test: install-dev lint
	$(BIN)/python -m pytest

# The quick tier: no subprocesses, servers or torch end-to-end runs (those are marked slow).
test-quick: install-dev lint
	$(BIN)/python -m pytest -m "not slow"

bench: install-dev
	$(BIN)/python -m evals.benchmarks.compiler
	$(BIN)/python -m evals.benchmarks.engine
	$(BIN)/python -m evals.benchmarks.planner
	$(BIN)/python -m evals.benchmarks.submit
	$(BIN)/python -m evals.benchmarks.responsiveness
	$(BIN)/python -m evals.benchmarks.http_wide_dag --start-nodeweaver --repeat 3  # add --comfyui URL to compare
	$(BIN)/python -m evals.benchmarks.ray_scaling
	$(BIN)/python -m evals.benchmarks.diffusion --size tiny --res 64
	$(BIN)/python -m evals.templates_report

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
