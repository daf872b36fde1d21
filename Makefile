# Atelier: `make run` starts everything on one machine; `make test` runs the whole suite.
# Both create .venv/ on first use and skip the install when pyproject.toml has not changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
# torch first, pinned: pip then takes the CPU wheel this machine has on disk instead of
# resolving a multi-GB CUDA build as a dependency of something else.
TORCH_PIN := torch==2.13.0

.PHONY: run test fuzz bench eval-demo eval-safety setup migrate demo clean

$(BIN)/python:
	@$(PYTHON) -c "import sys; assert sys.version_info[:2] == (3, 11)" 2>/dev/null || { echo "Python 3.11 is required: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0

# Demo models are trained once (a few minutes on 2 cores) and cached under var/models/demo/.
demo: migrate
	$(BIN)/python manage.py prepare_demo

run: demo
	$(BIN)/python manage.py bootstrap --url http://127.0.0.1:$(PORT)
	# exec: the supervisor takes the shell's place, so that a SIGTERM to make reaches it (and so its children)
	exec env PORT=$(PORT) $(BIN)/python -m atelier_platform.supervisor Procfile

test: setup
	bash scripts/run-tests.sh

# The OpenAPI fuzz test with many more examples per operation and schemathesis' coverage phase
# (boundary and invalid values for every field); `make test` runs it with a few examples.
FUZZ_EXAMPLES ?= 100
fuzz: setup
	ATELIER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ATELIER_FUZZ_COVERAGE=1 bash scripts/run-tests.sh tests/api/test_fuzz.py -q

bench: demo
	$(BIN)/python bench/screening.py
	$(BIN)/python bench/plugins.py
	$(BIN)/python bench/batching.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/search.py

# Precision and recall per category of the built-in safety checks on the shipped labelled set.
eval-safety: setup
	$(BIN)/python -m atelier_plugins.safety.evaluate

# The chatbot with the demo model and knowledge base on the shipped questions (needs 8 of 10 or better).
eval-demo: demo
	$(BIN)/python manage.py eval_demo

clean:
	rm -rf var/broker var/static
