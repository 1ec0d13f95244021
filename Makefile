# Two entry points that do all the set-up on a fresh machine:
#   make demo   generate SynthFace, train, evaluate (CPU, about 10 minutes)
#   make test   lint, type-check and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel keeps set-up small and offline-friendly; GPU users install their own CUDA torch first
# (see README) and run `make venv TORCH_SPEC=` to keep it.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.facescale-installed
# The tests also cover the DALI loader (DALI decodes on the CPU when there is no GPU); the demo
# does not need it, so only `make test` installs it (about 1 GB). DALI_SPEC= skips it.
DALI_SPEC  ?= nvidia-dali-cuda120==2.4.0
DALI_STAMP := $(VENV)/.dali-installed

.PHONY: venv demo test lint typecheck pytest clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/python -m pip install -q "$(TORCH_SPEC)"; fi
	$(BIN)/python -m pip install -q -e ".[dev,realface]"
	# facenet-pytorch carries the MTCNN weights; its own pins (old torch, torchvision) are not wanted.
	$(BIN)/python -m pip install -q --no-deps "facenet-pytorch==2.6.0"
	# insightface's wheel ships real photos (a six-person group photo, an aligned face) the detector tests use.
	$(BIN)/python -m pip install -q --no-deps "insightface==2.1"
	touch $(STAMP)

$(DALI_STAMP): $(STAMP)
	# The stamp only follows an install: a run with DALI_SPEC= leaves the next `make test` to install it.
	if [ -n "$(DALI_SPEC)" ]; then $(BIN)/python -m pip install -q "$(DALI_SPEC)" && touch $(DALI_STAMP); fi

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy src/facescale

pytest: $(STAMP) $(DALI_STAMP)
	$(BIN)/python -m pytest tests

test: lint typecheck pytest

clean:
	rm -rf $(VENV) runs
