# NodeWeaver developer entry points. `make demo` and `make test` are the README's quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, from its pin (a CPU build on these machines), so nothing pulls a different build.
TORCH_PIN ?= torch==2.13.0

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[diffusion]'

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,diffusion]'

# The main job, offline on embedded defaults: run the example workflows and list their outputs
# (the image one on a tiny random-weight demo checkpoint that this writes into the models folder).
demo: install
	$(BIN)/nodeweaver demo-checkpoint
	$(BIN)/nodeweaver run examples/text_to_image.json
	$(BIN)/nodeweaver run examples/welcome_text.json

lint: install-dev
	$(BIN)/ruff check .

test: install-dev lint
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python -m evals.benchmarks.compiler
	$(BIN)/python -m evals.benchmarks.engine
	$(BIN)/python -m evals.templates_report

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
