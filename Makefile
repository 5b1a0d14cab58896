# ModelsLab Image-to-3D for Blender — every target sets up what it needs.
#   make demo   local server + the add-on headless on examples/ -> demo-output/
#   make test   lint, type check, unit, blender (bpy 5.0.1 and 4.2 LTS), gui layers and the soak
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_BPY50 := .venv-bpy50
VENV_BPY42 := .venv-bpy42
PIP_FLAGS := --quiet --disable-pip-version-check
BLENDER_EXT = $(VENV_BPY50)/lib/python3.11/site-packages/bpy/5.0/scripts/addons_core/bl_pkg/cli/blender_ext.py
PYTEST_FLAGS ?= -q

.PHONY: help setup setup-bpy setup-gui lint typecheck build test test-unit test-blender test-blender50 \
        test-blender42 test-gui demo server bench soak clean

help:
	@echo "make demo   - run the add-on headless on the example images (local server, no key, no network)"
	@echo "make test   - every test layer (lint, types, unit, blender 5.0 + 4.2, gui, soak)"
	@echo "make build  - dist/modelslab_3d-<version>.zip (extension) and the legacy zip"
	@echo "make bench  - benchmarks -> bench/results.json, docs/BENCHMARKS.md"
	@echo "make server - the local ModelsLab-compatible server on 127.0.0.1:8765"

# --- environments -----------------------------------------------------------------------------
$(VENV)/.stamp: requirements/dev.txt
	@echo "== setting up $(VENV) (dev tools, local server)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/pip install $(PIP_FLAGS) -r requirements/dev.txt
	touch $@

$(VENV_BPY50)/.stamp: requirements/bpy50.txt
	@echo "== setting up $(VENV_BPY50) (Blender 5.0.1 as a Python module)"
	$(PYTHON) -m venv $(VENV_BPY50)
	$(VENV_BPY50)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_BPY50)/bin/pip install $(PIP_FLAGS) -r requirements/bpy50.txt
	touch $@

$(VENV_BPY42)/.stamp: requirements/bpy42.txt
	@echo "== setting up $(VENV_BPY42) (Blender 4.2 LTS as a Python module)"
	$(PYTHON) -m venv $(VENV_BPY42)
	$(VENV_BPY42)/bin/pip install $(PIP_FLAGS) --upgrade pip
	$(VENV_BPY42)/bin/pip install $(PIP_FLAGS) -r requirements/bpy42.txt
	touch $@

setup: $(VENV)/.stamp
setup-bpy: $(VENV_BPY50)/.stamp $(VENV_BPY42)/.stamp

# Debian's Blender in a virtual X server for the gui layer; needs root for apt-get.
setup-gui:
	@if command -v blender >/dev/null && command -v xvfb-run >/dev/null && /usr/bin/python3 -c "import requests" 2>/dev/null; then \
	  exit 0; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "== installing blender, xvfb, python3-requests with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq blender xvfb xauth python3-requests python3-numpy >/dev/null; \
	else \
	  echo "!! not root and Blender/Xvfb missing: the gui layer will be skipped"; \
	fi

# --- checks -----------------------------------------------------------------------------------
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy api blender operators panels

build: setup-bpy
	$(VENV_BPY50)/bin/python scripts/build_extension.py

# pytest exits 5 when it collected nothing: that is a broken layer, never a pass.
PYTEST_RUN = scripts/run_pytest.sh

test-unit: setup
	$(PYTEST_RUN) $(VENV)/bin/python $(PYTEST_FLAGS) tests/unit

test-blender50: setup setup-bpy build
	$(PYTEST_RUN) $(VENV_BPY50)/bin/python $(PYTEST_FLAGS) tests/blender tests/batch

test-blender42: setup setup-bpy build
	$(PYTEST_RUN) $(VENV_BPY42)/bin/python $(PYTEST_FLAGS) tests/blender tests/batch

test-blender: test-blender50 test-blender42

test-gui: setup setup-bpy setup-gui build
	$(PYTEST_RUN) $(VENV)/bin/python $(PYTEST_FLAGS) tests/gui

test: lint typecheck test-unit test-blender test-gui soak
	@echo "== all test layers passed"

# --- running it -------------------------------------------------------------------------------
server: setup
	$(VENV)/bin/python -m server --port 8765

demo: setup setup-bpy
	$(VENV_BPY50)/bin/python scripts/demo.py

bench: setup setup-bpy setup-gui build
	$(VENV)/bin/python -m bench

soak: setup setup-bpy setup-gui
	$(PYTEST_RUN) $(VENV_BPY50)/bin/python $(PYTEST_FLAGS) tests/soak

clean:
	rm -rf dist demo-output .pytest_cache .ruff_cache .mypy_cache
