# Two commands on a fresh machine: `make demo` (set up + offline demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DB ?= data/demo.sqlite3

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo run sync console test test-fast reliability lint format bench docker clean catalogues

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,ray]'
	touch $(STAMP)

demo: $(STAMP)
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(PY) -m bot --db $(DEMO_DB) train data/belling-the-cat.txt --channel demo
	$(PY) -m bot --db $(DEMO_DB) continue had a general --channel demo
	$(PY) -m bot --db $(DEMO_DB) continue mouse mouse mouse --channel demo

run: $(STAMP)
	$(PY) -m bot run

sync: $(STAMP)
	$(PY) -m bot sync

console: $(STAMP)
	$(PY) -m bot console

test: $(STAMP)
	$(PY) -m pytest -q -n 3 --dist loadscope --durations=20

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not e2e"

reliability: $(STAMP)
	$(PY) -m pytest -q tests/reliability -p no:randomly -rA

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Discord's languages: extract every message into locales/fabulist.pot and merge it into each
# language's .po (docs/languages.md), then translate what is new and run test_catalogues.py.
catalogues: $(STAMP)
	$(PY) -m bot.discord_adapter.catalogues
	$(PY) -m pytest -q tests/service/test_catalogues.py

bench: $(STAMP)
	for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The container image (deploy/Dockerfile): fabulist:latest, or IMAGE=name:tag.
IMAGE ?= fabulist:latest
docker:
	docker build -f deploy/Dockerfile -t $(IMAGE) .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
