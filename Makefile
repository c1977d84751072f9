# Sluice: `make run` starts the whole marketplace; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SERVICES := access audit catalog orders dataservice

.PHONY: install run migrate test test-sqlite lint bench demo cluster clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Sluice and its dependencies into $(VENV) (first run takes a minute)"
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

var/dev.env: | $(STAMP)
	@$(PY) deploy/local/make_dev_env.py var/dev.env

migrate: $(STAMP) var/dev.env
	@set -a; source var/dev.env; set +a; \
	for s in $(SERVICES); do $(PY) -m services.$$s migrate || exit 1; done

run: migrate
	@$(PY) deploy/local/banner.py
	@$(VENV)/bin/honcho -e var/dev.env -f Procfile start

# The whole suite. PostgreSQL variants run when SLUICE_TEST_POSTGRES_URL is set
# (.ci/run sets it), e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test
test: $(STAMP)
	@$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy shared services sluice deploy/local/config_reference.py deploy/local/cluster.py deploy/local/balancer.py

# Every bench/bench_*.py, one table, JSON under bench/results/ (docs/performance.md).
# BENCH_FULL=1 for the large sizes; BENCH_ARGS="--only audit --publish" passes options.
bench: $(STAMP)
	@$(PY) bench/run.py $(BENCH_ARGS)

# Two replicas of every service on PostgreSQL behind HAProxy (installed with apt-get when
# missing); see docs/deployment.md. CLUSTER_ARGS="--replicas 3 --workers 2 --fresh" to change it.
cluster: $(STAMP) var/dev.env
	@$(PY) deploy/local/cluster.py $(CLUSTER_ARGS)

# The marketplace story (starts `make run` first if it is not up).
demo: $(STAMP) var/dev.env
	@deploy/local/demo.sh

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
