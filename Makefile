# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
# Both create or update .venv themselves (re-installing only when setup.cfg changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfface-installed
EXTRAS ?= lite,detect,train,viz,dev
PYTEST_ARGS ?=

.PHONY: demo test test-slow venv clean lint

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tfface.demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check tfface tflite training eval tests bench

clean:
	rm -rf $(VENV) build *.egg-info
