# make demo  : set up .venv, train, archive, serve with the drawing page, answer one request
# make test  : set up .venv, run the test suite (what CI runs)
# make stop  : stop what make demo / make serve started
# make serve-cluster [REPLICAS=2] : TorchServe replicas behind nginx on 127.0.0.1:8090; make stop-cluster
# make deploy MAR=model_store/digit-2.mar : roll a model out, replica by replica; make rollback
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# MNIST in torchvision's layout (<dir>/MNIST/raw); torchvision downloads it into ./data when absent.
DATA_DIR ?= $(if $(wildcard ../shared/data/MNIST/raw/train-images-idx3-ubyte),../shared/data,data)
export DIGIT_DATA_DIR := $(abspath $(DATA_DIR))
SAMPLE ?= examples/seven.png
PORT ?= 8080
UI_PORT ?= 8000
REPLICAS ?= 2
CLUSTER_LISTEN ?= 127.0.0.1:8090

.PHONY: help venv demo train archive serve stop eval-serving bench-serving ui test test-fast lint clean
.PHONY: serve-cluster stop-cluster deploy rollback

help:
	@grep -E '^# make' Makefile | sed 's/^# //'
	@echo "targets: venv demo train archive serve stop eval-serving bench-serving ui test test-fast lint clean"
	@echo "in production: serve-cluster stop-cluster deploy rollback"

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(PY) train.py $(TRAIN_ARGS)
	$(PY) scripts/archive.py
	$(PY) scripts/serve.py start --page --page-port $(UI_PORT)
	curl -s -F file=@$(SAMPLE) http://127.0.0.1:$(PORT)/predictions/digit; echo
	@run=$$(ls -td logs/train/runs/*/ | head -1); \
	echo; echo "Next:"; \
	echo "  draw a digit:  http://127.0.0.1:$(UI_PORT)/"; \
	echo "  the run:       tensorboard --logdir $${run}tensorboard"; \
	echo "  stop serving:  make stop"

train: venv
	$(PY) train.py $(TRAIN_ARGS)

archive: venv
	$(PY) scripts/archive.py $(RUN)

serve: venv
	$(PY) scripts/serve.py start --page --page-port $(UI_PORT)

stop: venv
	$(PY) scripts/serve.py stop

model_store/digit.mar: | venv
	$(PY) train.py $(TRAIN_ARGS)
	$(PY) scripts/archive.py

serve-cluster: venv model_store/digit.mar
	$(PY) scripts/cluster.py start --replicas $(REPLICAS) --listen $(CLUSTER_LISTEN)

stop-cluster: venv
	$(PY) scripts/cluster.py stop

deploy: venv
	$(PY) scripts/deploy.py $(MAR)

rollback: venv
	$(PY) scripts/deploy.py --rollback

eval-serving: venv
	$(PY) scripts/eval_serving.py --check

bench-serving: venv
	$(PY) scripts/bench_serving.py

ui: venv
	$(PY) -m digit_classifier.web --port $(UI_PORT) --torchserve-url http://127.0.0.1:$(PORT)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -m "not slow and not load" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf logs model_store/*.mar .pytest_cache
