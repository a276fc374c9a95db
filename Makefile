# bpfnb: `make lab` starts JupyterLab with the notebooks; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BCC_DIR := /usr/lib/python3/dist-packages/bcc
PORT ?= 8888

.PHONY: setup system lab test lint bench notebooks recordings clean

setup: system $(STAMP)

system:
	@bash scripts/setup-system

$(STAMP): pyproject.toml scripts/setup-venv
	@bash scripts/setup-venv $(PYTHON) $(VENV) $(BCC_DIR)
	@touch $(STAMP)

# JupyterLab on 127.0.0.1:$(PORT) (PORT=9999 make lab), no news or update popups; each
# notebook loads the kit itself (`%load_ext bpfnb`, its first cell)
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
lab: setup $(LAB_SETTINGS)
	$(VENV)/bin/jupyter lab --allow-root --no-browser --ip=127.0.0.1 --port=$(PORT) \
	    --LabApp.news_url=None --notebook-dir=notebooks

$(LAB_SETTINGS):
	mkdir -p $(dir $@)
	echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' > $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check bpfnb tests bench
	$(VENV)/bin/mypy

# run the notebooks live (as root) and save them with their outputs (reviewable in a diff);
# NOTEBOOKS="02 17" runs only those
notebooks: setup
	$(PY) scripts/run-notebooks $(NOTEBOOKS)

# re-record notebooks/recordings (what the notebooks replay where BPF cannot load) in the
# same runs that save the notebooks with outputs
recordings: setup
	$(PY) scripts/run-notebooks --record $(NOTEBOOKS)

bench: setup
	$(PY) bench/read_maps.py
	$(PY) bench/stacks.py
	$(PY) bench/events.py
	$(PY) bench/live.py

clean:
	rm -rf $(VENV)
