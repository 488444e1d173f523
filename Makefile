# Two entry points: `make run` (the whole pipeline) and `make test` (the fast test suite).
# `make test-slow` runs the slow tier (docs/development.md); `make lint` the static checks.
# Both create the virtual environment first when it is missing.
VENV ?= .venv
CORES ?= 4
PY := $(VENV)/bin/python
# The environment is rebuilt only when the dependency list changes.
DEPS_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.deps-$(DEPS_HASH)

.PHONY: run test test-slow lint install

$(STAMP):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.deps-*
	touch $(STAMP)

# The editable install is refreshed every time: a shared environment may point at another clone.
install: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .

run: install
	$(VENV)/bin/snakemake --cores $(CORES)
	$(VENV)/bin/snakemake --cores 1 --report results/report.html

# The fast tier: unit tests and one shared tiny pipeline run, on two workers that take whole
# files (a file's fixtures are built once; the first worker to need the tiny run makes it).
test: install
	$(VENV)/bin/pytest -m "not slow" -n 2 --dist loadfile

# The slow tier: second runs for byte identity, kills and resumes, chunk-size invariance, the
# report in Chromium, and the pipeline through SLURM on a single-node cluster on localhost
# (needs root: installs munge and SLURM with apt-get when missing; see tests/slurm/README.md).
test-slow: install
	CNNPIPE_SLURM=1 $(VENV)/bin/pytest -m slow --durations=10

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check .
