# Set-up is part of every target: a fresh machine needs only Python 3.11 and make.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision are pinned together in every pip call that could pull torch (see pyproject).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-fast clean

# The demo needs the runtime dependencies only; the tests add the `test` extra (pytest, and the
# Milvus 2.3.5 standalone server the serving tests run against).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH_PINS)
	$(VENV)/bin/pip install --quiet -e . $(TORCH_PINS)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e '.[test]' $(TORCH_PINS)
	touch $@

demo: $(VENV)/.installed
	$(PY) -m jobs demo

test: $(VENV)/.installed-test
	$(PY) -m pytest

# The unit tests alone: no Ray cluster, no server (tests/conftest.py marks the others slow).
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) vidx-demo
