# Kiln: `make run` trains, registers and serves the quickstart; `make test` runs the suite.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kiln-installed
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip warns once per package about this machine's extra local indexes; keep the output readable.
QUIET_PIP := { grep -v "is ignored" || true; }

.PHONY: install run test lint pythons bench clean clean-all cluster-up cluster-down cluster-check cluster-run

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11; 3.12 and 3.13 install too, with PyPI's CUDA build of torch)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

run: install
	$(BIN)/kiln run configs/quickstart.yaml

test: install
	$(BIN)/python -m pytest

# Ratios measured side by side on this machine; each script merges its figures into benchmarks/results.json.
# search_vs_peers (about an hour on 2 cores) runs last, so a stopped `make bench` keeps every other figure.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]' 2>&1 | $(QUIET_PIP)
	for script in quality pretrained_text serve_text number_encodings train_overhead ingest ingest_images tokenizers_vs_words scaling plan_accuracy asha_vs_random trial_cost quickstart serve score trees chaos stops fuzz search_vs_peers; do \
		echo "== benchmarks/$$script.py"; $(BIN)/python benchmarks/$$script.py || exit 1; done
	$(BIN)/python benchmarks/readme_table.py

# A two-node Ray cluster + PostgreSQL + MLflow server on this machine (platform/README.md).
cluster-up: install
	$(BIN)/python -m pip install --quiet -e '.[cluster]' 2>&1 | $(QUIET_PIP)
	platform/cluster-up.sh

cluster-down:
	platform/cluster-down.sh

cluster-check:
	platform/check-auth.sh

cluster-run: cluster-up
	source kiln-cluster/cluster.env && $(BIN)/kiln run configs/cluster.yaml

lint: install
	$(BIN)/ruff check pipelines serving tests benchmarks
	$(BIN)/ruff format --check pipelines serving tests benchmarks

# Every pin (Kiln's, dev's and the pretrained extra's, which dev names as kiln[pretrained]) resolves to a wheel
# for Python 3.12 and 3.13 too: a dry run, nothing installed.
pythons: install
	$(BIN)/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		extras = p["optional-dependencies"]; pins = p["dependencies"] + extras["dev"] + extras["pretrained"]; \
		print("\n".join(d for d in pins if not d.startswith("kiln[")))' > $(VENV)/requirements-all.txt
	for version in 3.12 3.13; do \
		$(BIN)/pip install --dry-run --quiet --ignore-installed --only-binary=:all: --python-version $$version \
			--target $(VENV)/dry-run -r $(VENV)/requirements-all.txt 2>&1 | $(QUIET_PIP); \
		echo "Python $$version: every pin resolves to a wheel"; done

# clean leaves kiln-runs/ alone: it holds the MLflow store, the registry and every model in it.
clean:
	rm -rf .pytest_cache test-artifacts

# clean-all also deletes kiln-runs/: every run, the registry and its models.
clean-all: clean
	rm -rf kiln-runs
