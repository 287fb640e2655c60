# HARPS-VO: the two commands are `make demo` and `make test` (see README.md).
# Run as root on Debian 12.  Every target is idempotent.

PORT ?= 8080
BIND ?= 127.0.0.1
SERVER_URL ?= http://localhost:$(PORT)
AUTHORITY ?= harps.example.org
# DaCHS worker processes behind the nginx front door (empty: one per core)
WORKERS ?=
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
# generated data (synthetic archive, checkpoints, bench outputs): never in git
WORK ?= $(CURDIR)/var

export PORT BIND SERVER_URL AUTHORITY VENV WORK WORKERS

.PHONY: demo test test-fast test-server install deploy start stop restart status ingest check \
	bench lint help

help:
	@sed -n '1,3p' Makefile; echo; grep -E '^[a-z-]+:.*##' Makefile | sed 's/:.*##/ --/'

install: ## Debian packages, venv, DaCHS configuration, deployment; starts the service
	etc/dachsctl all

deploy: ## copy resdir/ (RD, res/ Python) to DaCHS after editing it
	etc/dachsctl deploy
	etc/dachsctl restart

start: ## start PostgreSQL, the DaCHS workers and the nginx front door
	etc/dachsctl start

stop: ## stop what `make demo` started
	etc/dachsctl stop

restart: ## rolling restart of the DaCHS workers (WORKERS=N changes their number)
	etc/dachsctl restart

status:
	@etc/dachsctl status

ingest: ## import a directory tree of HARPS files: make ingest DATA=<dir>
	@test -n "$(DATA)" || { echo "usage: make ingest DATA=<directory of HARPS FITS files>"; exit 3; }
	$(VENV)/bin/harps-ingest $(DATA)

check: ## self-check of the running service (DaCHS regression suite)
	etc/dachsctl selftest -v

demo: install ## everything: install, start, demo archive + latent layer, self-check
	etc/demo

test: install ## the whole suite: test-fast, then the demo and the server tests
	$(PY) -m pytest -m 'not server'
	etc/demo
	$(PY) -m pytest -m server

# the venv alone (Debian's python3-venv, torch, pyvo): what test-fast needs
$(PY):
	etc/dachsctl venv

test-fast: $(PY) ## the tests that need no server: no DaCHS started, under a minute
	$(PY) -m pytest -m 'not server'

test-server: install ## only the tests against the live service (starts it as needed)
	$(PY) -m pytest -m server

bench: demo ## benchmarks against the demo service (see bench/README.md)
	$(PY) bench/run.py

lint:
	$(VENV)/bin/ruff check ml harps_synth resdir/res tests bench
