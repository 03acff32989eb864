# CRL Ops: `make run` (set up, migrate, collect static files, train and promote a demo policy, serve),
# `make test` (everything) and `make test-fast` (the unit tier).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The unit tier: no services started, no model trained, nothing slow.
FAST_MARKERS := not integration and not browser and not slow and not trains

.PHONY: setup port-free run serve test test-fast migrate static bench bench-db clean

setup: $(VENV)/.installed

# Idempotent: re-installs only when the dependency list or the pins change.
# constraints.txt pins torch to the CPU build on this disk (any other torch pulls a multi-GB CUDA build).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

migrate: setup
	$(PY) manage.py migrate --noinput

# Hashed, compressed copies under var/static/ that WhiteNoise serves (the admin's CSS, the API docs' scripts).
static: setup
	$(PY) manage.py collectstatic --noinput --verbosity 0

# make run stops before the set-up and the demo's training, not after them, when a server already answers on its
# address (any other problem with the address is left to the web server to report).
port-free:
	@$(PYTHON) -c "import socket, sys; s = socket.socket(); s.settimeout(1); \
	sys.exit(3 if s.connect_ex(('$(HOST)', $(PORT))) == 0 else 0)" 2>/dev/null; \
	if [ $$? = 3 ]; then echo "make run: $(HOST):$(PORT) is in use (another server?); choose another: make run PORT=8080"; \
	exit 1; fi

# The worker's pool processes share the cores: each sizes PyTorch to cores / concurrency (crlsite/celery.py).
SERVE_WORKER ?= $(VENV)/bin/celery -A crlsite worker -Q default,gpu -c 2 --loglevel=INFO
SERVE_SERVER ?= $(PY) manage.py runserver $(HOST):$(PORT) --noreload

# make run's last step, as `make serve` alone (after one make run: serve again without the set-up): a Celery worker
# in the background and the web server in the foreground (SERVE_WORKER, SERVE_SERVER; tests/test_makefile.py gives
# stand-ins). Ctrl-C is the normal way to stop them: the worker is stopped and make exits 0. In a terminal's
# foreground the server runs as a job of its own (set -m), so that Ctrl-C reaches the server only and not make,
# which would otherwise end "Interrupt" with status 130 whatever the recipe does; the server's exit on Ctrl-C (0,
# or 130) counts as 0, and an INT trap covers the rest. Any other failure of the server fails make with its status,
# the worker stopped too.
define SERVE_RECIPE
@echo "Starting a Celery worker (queues default,gpu) and the web server on http://$(HOST):$(PORT)/admin/"
@set -e; \
if $(PYTHON) -c 'import os, sys; sys.exit(os.tcgetpgrp(0) != os.getpgrp())' 2>/dev/null; then set -m; fi; \
echo "--- make run, $$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>var/worker.log; \
$(SERVE_WORKER) </dev/null >>var/worker.log 2>&1 & \
worker=$$!; \
stop_worker() { kill $$worker 2>/dev/null || true; wait $$worker 2>/dev/null || true; }; \
trap 'stop_worker; exit 0' INT; trap 'stop_worker; exit 143' TERM; trap 'stop_worker; exit 129' HUP; \
echo "worker pid $$worker (log, appended to: var/worker.log)"; \
status=0; $(SERVE_SERVER) || status=$$?; \
stop_worker; \
if [ $$status -ne 0 ] && [ $$status -ne 130 ]; then \
	echo "make run: the web server exited with status $$status (the worker is stopped)" >&2; exit $$status; fi
endef

run: port-free migrate static
	$(PY) manage.py setup_demo
	$(SERVE_RECIPE)

serve:
	$(SERVE_RECIPE)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "$(FAST_MARKERS)" -n 2 $(PYTEST_ARGS)

# Benchmarks print Markdown tables; `bench-db` needs DATABASE_URL (PostgreSQL) and, for the API, CACHE_URL (Redis).
bench: setup
	$(PY) bench/dtlite.py
	$(PY) bench/train_policy.py

bench-db: setup
	$(PY) bench/ingest.py
	$(PY) bench/extract.py
	$(PY) bench/api_load.py --seconds 60

clean:
	rm -rf var .pytest_cache
