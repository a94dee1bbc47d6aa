# tenantflow: `make setup` once, then `make run` or `make test`.
PYTHON ?= python3
UV_LOCAL := $(CURDIR)/.local/uv/bin/uv
# uv from PATH; where there is none, `make setup` installs it from PyPI into .local/uv (no root)
UV ?= $(shell command -v uv 2>/dev/null || echo $(UV_LOCAL))
PYTEST = $(UV) run --frozen pytest
SRC = contracts/src libs/bus/src libs/graph/src libs/devinfra/src services/portal-api/src services/consent/src \
      services/directory-sync/src services/intune-writer/src emulator/src tools/audit/src

.PHONY: setup run demo chaos test test-unit test-integration test-e2e lint format contracts bench infra-up infra-down clean

setup: $(filter $(UV_LOCAL),$(UV)) ## environment with uv, and the Kafka broker's jars in the user cache
	$(UV) sync --frozen --all-packages
	$(UV) run --frozen tenantflow-infra fetch

$(UV_LOCAL):
	$(PYTHON) tools/bootstrap_uv.py $(CURDIR)/.local/uv

run: ## local Kafka + PostgreSQL (or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL) and every service
	$(UV) run --frozen python -m tenantflow.devinfra.run

demo: ## against `make run`: link the demo tenant, deploy two apps, print statuses and the audit
	$(UV) run --frozen python -m tenantflow.devinfra.demo

chaos: ## 1,000 changes across 50 tenants while services, Kafka and PostgreSQL are killed (make test runs a short form)
	$(UV) run --frozen python -m tenantflow.devinfra.chaos --json bench/results/chaos.json

test: ## every tier: unit, integration (real Kafka and PostgreSQL), e2e (services as processes)
	$(PYTEST)

test-unit: ## the fast loop: no I/O
	$(PYTEST) -m unit

test-integration:
	$(PYTEST) -m integration

test-e2e:
	$(PYTEST) -m e2e

lint:
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy $(SRC) contracts/tools bench

format:
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

contracts: ## regenerate JSON Schemas, missing examples and the AsyncAPI document
	$(UV) run --frozen python contracts/tools/generate.py

bench: ## every benchmark, each within its deadline: figures printed, bench/results/bench.json and PNG plots
	$(UV) run --frozen python bench/run_all.py

infra-up:
	$(UV) run --frozen tenantflow-infra up

infra-down:
	$(UV) run --frozen tenantflow-infra down

clean: infra-down
	rm -rf .local bench/results
