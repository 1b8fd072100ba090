# make demo  : set up .venv, train, archive, serve, answer one request
# make test  : set up .venv, run the test suite (what CI runs)
# make ui    : the drawing page on http://127.0.0.1:8000/ (start TorchServe first: make serve)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw/train-images-idx3-ubyte),../shared/data,data)
SAMPLE ?= examples/seven.png
PORT ?= 8080
UI_PORT ?= 8000

.PHONY: help venv demo train archive serve stop eval-serving bench-serving ui test test-fast lint clean

help:
	@grep -E '^# make' Makefile | sed 's/^# //'
	@echo "targets: venv demo train archive serve stop eval-serving bench-serving ui test test-fast lint clean"

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(PY) train.py data.data_dir=$(DATA_DIR) $(TRAIN_ARGS)
	$(PY) scripts/archive.py
	$(PY) scripts/serve.py start
	curl -s -F file=@$(SAMPLE) http://127.0.0.1:$(PORT)/predictions/digit; echo

train: venv
	$(PY) train.py data.data_dir=$(DATA_DIR) $(TRAIN_ARGS)

archive: venv
	$(PY) scripts/archive.py $(RUN)

serve: venv
	$(PY) scripts/serve.py start

stop: venv
	$(PY) scripts/serve.py stop

eval-serving: venv
	$(PY) scripts/eval_serving.py --data-dir $(DATA_DIR) --check

bench-serving: venv
	$(PY) scripts/bench_serving.py

ui: venv
	$(PY) -m digit_classifier.webapp --port $(UI_PORT) --torchserve-url http://127.0.0.1:$(PORT)

test: venv
	DIGIT_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	DIGIT_DATA_DIR=$(abspath $(DATA_DIR)) $(PY) -m pytest -m "not slow and not load" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf logs model_store/*.mar .pytest_cache
