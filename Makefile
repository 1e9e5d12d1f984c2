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
PYTEST_ARGS ?=

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP   := $(BIN)/python -m pip --disable-pip-version-check
PIN   := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: install demo test clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(PIN) -e '.[test]'
	@touch $@

install: $(STAMP)

MODELS ?= unadjusted paper full full_hsgp

demo: $(STAMP)
	$(BIN)/backpain-epi simulate --n 27518 --seed 2025 --out $(DEMO_OUT)/cohort.csv --truth-out $(DEMO_OUT)/truth.json
	$(BIN)/backpain-epi validate $(DEMO_OUT)/cohort.csv --report-out $(DEMO_OUT)/validation.csv
	$(BIN)/backpain-epi describe $(DEMO_OUT)/cohort.csv
	@for m in $(MODELS); do \
	  echo; echo "== fit models/$$m.yaml"; \
	  $(BIN)/backpain-epi fit --data $(DEMO_OUT)/cohort.csv --spec models/$$m.yaml --out $(DEMO_OUT)/runs/$$m --allow-failed-diagnostics || exit $$?; \
	done
	@echo; echo "== compare"
	$(BIN)/backpain-epi compare $(addprefix $(DEMO_OUT)/runs/,$(MODELS)) --out $(DEMO_OUT)/comparison.csv
	@echo
	@echo "Demo output in $(abspath $(DEMO_OUT)): cohort.csv and truth.json (the data and its planted truth), validation.csv,"
	@echo "runs/<model>/ (posterior.nc, summary.csv, activity_curve.csv, spec.yaml, provenance.json), comparison.csv."

# TESTS=quick (default) skips tests marked slow; TESTS=all runs them too (CI does).
test: $(STAMP)
	$(BIN)/python -m pytest $(if $(filter quick,$(TESTS)),-m "not slow") $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache build src/*.egg-info
