# Two entry points for a fresh machine (README, "Quick start"); both set up .venv first.
PYTHON := .venv/bin/python

.PHONY: setup demo test benchmark

setup:
	bash tools/setup_env.sh

demo: setup
	$(PYTHON) tools/demo.py

test: setup
	$(PYTHON) -m pytest -q tests

benchmark: setup
	$(PYTHON) tools/benchmark.py
