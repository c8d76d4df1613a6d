# jangbu developer targets. `make demo` is the five-minute tour; `make test` runs the suite.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
JANGBU      := $(BIN)/jangbu
STAMP       := $(VENV)/.installed
TEST_STAMP  := $(VENV)/.installed-test

CUSTOMS_DIR    ?= .devnet/customs
CUSTOMS_PORT   ?= 26600
LIVESTOCK_DIR  ?= .devnet/livestock
LIVESTOCK_PORT ?= 26700

.PHONY: help install demo demo-livestock down status test lint clean

help:
	@echo "make demo            customs network + clearance demo (ports $(CUSTOMS_PORT)+)"
	@echo "make demo-livestock  livestock network + traceability demo (ports $(LIVESTOCK_PORT)+)"
	@echo "make status          height and peers of the demo networks"
	@echo "make down            stop the demo networks"
	@echo "make test            the test suite ($(BIN)/python -m pytest -q)"
	@echo "make lint            ruff + mypy"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project metadata or a compiled module's source changes (the
# install is editable; the clearance contract's modules are compiled by mypyc, and an
# edited one runs from its source until it is compiled again: contracts/clearance/compiled.py).
# The build records every source of contracts/ (compiled code relies on what it imports).
COMPILED_SOURCES := setup.py $(shell find contracts -name '*.py' ! -name build_stamp.py)

# The editable install compiles no bytecode, and where PYTHONDONTWRITEBYTECODE is set
# Python writes none either: every node start then compiled the sources again (~0.1 s of
# each restart's catch-up, docs/benchmarks.md). compileall writes it once; a source edited
# later is compiled afresh at import (its .pyc no longer matches).
BYTECODE := $(BIN)/python -m compileall -q cli node consensus contracts >/dev/null

$(STAMP): pyproject.toml $(COMPILED_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[speedups]'
	@$(BYTECODE)
	@touch $@

$(TEST_STAMP): pyproject.toml $(COMPILED_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@$(BYTECODE)
	@touch $@ $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@$(JANGBU) devnet down --dir $(CUSTOMS_DIR) >/dev/null 2>&1 || true
	$(JANGBU) devnet up --preset customs --dir $(CUSTOMS_DIR) --base-port $(CUSTOMS_PORT) --fresh
	$(JANGBU) demo clearance --dir $(CUSTOMS_DIR)
	@$(MAKE) --no-print-directory _where DIR=$(CUSTOMS_DIR) PORT=$(CUSTOMS_PORT)

demo-livestock: $(STAMP)
	@$(JANGBU) devnet down --dir $(LIVESTOCK_DIR) >/dev/null 2>&1 || true
	$(JANGBU) devnet up --preset livestock --dir $(LIVESTOCK_DIR) --base-port $(LIVESTOCK_PORT) --fresh
	$(JANGBU) demo livestock --dir $(LIVESTOCK_DIR)
	@$(MAKE) --no-print-directory _where DIR=$(LIVESTOCK_DIR) PORT=$(LIVESTOCK_PORT)

# Where to look: every node's web page (served at the API root) and API, from genesis.
_where:
	@echo ""
	@echo "The network in $(DIR) keeps running. Where to look:"
	@$(BIN)/python -c 'import json, sys; \
	  [print("  %-16s web page %s/   API %s/v1/status" % (v["name"], v["api"], v["api"])) \
	   for v in json.load(open(sys.argv[1]))["validators"]]' $(DIR)/genesis.json
	@echo "  CLI       $(JANGBU) status --node http://127.0.0.1:$$(( $(PORT) + 1 ))"
	@echo "            $(JANGBU) events --node http://127.0.0.1:$$(( $(PORT) + 1 )) --follow"
	@echo "  logs      $(DIR)/<org>/node.log"
	@echo "stop with: make down"

status: $(STAMP)
	@for d in $(CUSTOMS_DIR) $(LIVESTOCK_DIR); do \
	  if [ -f $$d/genesis.json ]; then echo "== $$d"; $(JANGBU) devnet status --dir $$d; fi; \
	done

down:
	@for d in $(CUSTOMS_DIR) $(LIVESTOCK_DIR); do \
	  if [ -f $$d/genesis.json ] && [ -x $(JANGBU) ]; then $(JANGBU) devnet down --dir $$d; fi; \
	done

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy cli node consensus contracts

clean: down
	rm -rf .devnet
