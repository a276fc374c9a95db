# bpfnb: `make lab` starts JupyterLab with the notebooks; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BCC_DIR := /usr/lib/python3/dist-packages/bcc
PORT ?= 8888

.PHONY: setup system lab test lint bench recordings clean

setup: system $(STAMP)

system:
	@bash scripts/setup-system

$(STAMP): pyproject.toml scripts/setup-venv
	@bash scripts/setup-venv $(PYTHON) $(VENV) $(BCC_DIR)
	@touch $(STAMP)

lab: setup
	IPYTHONDIR=$(abspath $(VENV))/ipython $(VENV)/bin/jupyter lab --allow-root --no-browser --ip=127.0.0.1 --port=$(PORT) \
	    --notebook-dir=notebooks

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check bpfnb tests bench
	$(VENV)/bin/mypy

# re-record notebooks/recordings (what the notebooks replay where BPF cannot load);
# NOTEBOOKS="10 17" records only those
recordings: setup
	IPYTHONDIR=$(abspath $(VENV))/ipython $(PY) scripts/record-notebooks $(NOTEBOOKS)

bench: setup
	$(PY) bench/read_maps.py
	$(PY) bench/stacks.py
	$(PY) bench/events.py
	$(PY) bench/live.py

clean:
	rm -rf $(VENV)
