# backpain-epi: two commands on a fresh machine with Python 3.11.
#   make demo   create .venv, install everything, run the demo on the embedded synthetic data
#   make test   create .venv, install everything, run the test suite
#
# Every install goes through constraints.txt, which pins torch to the CPU build
# (2.13.0) these machines install from local disk. A GPU user who has installed
# their own CUDA torch into .venv runs `make test CONSTRAINTS=` to keep it (README, "GPU").

PYTHON      ?= python3.11
VENV        ?= .venv
CONSTRAINTS ?= constraints.txt
DEMO_OUT    ?= demo_output
TESTS       ?= quick
# pytest-xdist workers (the fits are made once per run and shared between them); JOBS=0 runs in one process
JOBS        ?= 2
PYTEST_ARGS ?=
# the test tools and the optional segmentation engines (nnU-Net v2, TotalSegmentator); EXTRAS=test skips the engines
EXTRAS      ?= test,nnunet,totalseg

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP   := $(BIN)/python -m pip --disable-pip-version-check
PIN   := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: install demo test clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(PIN) -e '.[$(EXTRAS)]'
	@touch $@

install: $(STAMP)

DEMO_CONFIG ?= reports/demo.yaml

# The demo is the whole pipeline on the embedded synthetic data: simulate a cohort, image each
# participant as a Dixon phantom, segment, merge, fit the models, compare, report (reports/demo.yaml).
# A rerun skips the stages whose inputs have not changed.
demo: $(STAMP)
	$(BIN)/backpain-epi pipeline --config $(DEMO_CONFIG) --out $(DEMO_OUT) --allow-failed-diagnostics

# TESTS=quick (default) skips tests marked slow; TESTS=all runs them too (CI does).
test: $(STAMP)
	$(BIN)/python -m pytest $(if $(filter quick,$(TESTS)),-m "not slow") $(if $(filter-out 0,$(JOBS)),-n $(JOBS) --dist worksteal) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache build src/*.egg-info
