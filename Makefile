# Two commands on a fresh machine: `make demo` and `make test`. Both create (or reuse)
# the virtual environment in .venv and install the package into it with pip.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean mutate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

# Trains the tiny JEPA offline on the embedded synthetic dataset and prints the summary.
demo: $(STAMP)
	JEPA_DATA_DIR=$${JEPA_DATA_DIR:-data} $(BIN)/jepa-fit data=synthetic trainer.max_epochs=4

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Mutation testing before a release (not part of `make test` or CI: minutes per module on two
# cores). MODULES: paths under jepa_datamodules/ (default: every module of tools/mutate.py).
# The results of the last run are summarised in docs/mutation.md.
MUTMUT_VERSION ?= 3.8.1
mutate: $(STAMP)
	$(BIN)/python -m pip install -q "mutmut==$(MUTMUT_VERSION)"
	$(BIN)/python tools/mutate.py $(MODULES)

clean:
	rm -rf $(VENV) outputs .pytest_cache build/mutate
