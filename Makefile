# Development tasks. `make help` lists them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Rewritten after every install, so editing pyproject.toml makes the next `make venv` reinstall.
INSTALL_STAMP := $(VENV)/.installed

TRANSLATIONS := hotline/translations
MESSAGES_POT := $(TRANSLATIONS)/messages.pot
PO_FILES := $(wildcard $(TRANSLATIONS)/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)

# `make migration` autogenerates against this throwaway SQLite database, upgraded to head first, so the
# new revision contains only what changed in the models. SQLite also makes autogenerate write batch
# operations, which run on both SQLite and PostgreSQL.
MIGRATION_SCRATCH_DB := $(VENV)/migration-scratch.sqlite3

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint messages migration clean

help:
	@echo "make venv                       create $(VENV) with $(PYTHON) (3.11 or newer), install -e .[dev], compile translations"
	@echo "make demo [HOST=..] [PORT=..]   run 'hotline demo'; HOST and PORT become --host and --port"
	@echo "make test [PYTEST_ARGS=..]      run pytest; needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379"
	@echo "make lint                       run ruff check"
	@echo "make messages                   extract translatable strings to $(MESSAGES_POT) and merge them into each messages.po"
	@echo "make migration MESSAGE=..       autogenerate an Alembic revision from the changes to hotline/models.py"
	@echo "make clean                      remove caches, build output, compiled catalogues and the install stamp (keeps $(VENV))"

venv: $(INSTALL_STAMP) $(MO_FILES)

$(INSTALL_STAMP): pyproject.toml
	@if [ -x $(BIN)/python ]; then interpreter=$(BIN)/python; else interpreter=$(PYTHON); fi; \
	if ! command -v $$interpreter >/dev/null 2>&1; then \
		echo "error: $$interpreter not found. Install Python 3.11 or newer, or run make PYTHON=/path/to/python3.11 venv" >&2; \
		exit 1; \
	fi; \
	if ! $$interpreter -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		echo "error: $$interpreter is $$($$interpreter --version 2>&1), but the hotline needs Python 3.11 or newer." >&2; \
		echo "Run make PYTHON=/path/to/python3.11 venv (delete $(VENV) first if it was made with the old Python)." >&2; \
		exit 1; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Compiled catalogues are not committed, because .gitignore lists *.mo. The package data in pyproject.toml
# puts them into a built package, so compile before `pip install .` or a wheel build.
%.mo: %.po | $(INSTALL_STAMP)
	$(BIN)/pybabel compile --statistics --domain messages --input-file $< --output-file $@

demo: venv
	$(BIN)/hotline demo $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

# pytest exits with 5 when it collected no tests. Make fails on that as on any non-zero code, and the
# message says why, so a run that tested nothing never passes.
test: venv
	@status=0; $(BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests (exit code 5)" >&2; fi; \
	exit $$status

lint: venv
	$(BIN)/ruff check .

messages: venv
	$(BIN)/pybabel extract --mapping-file babel.cfg --sort-by-file --add-comments TRANSLATORS: \
		--project hotline --copyright-holder "Qingpu District funeral-service hotline" \
		--output-file $(MESSAGES_POT) .
	$(BIN)/pybabel update --domain messages --input-file $(MESSAGES_POT) --output-dir $(TRANSLATIONS) \
		--ignore-obsolete
	@echo "Translate the new or fuzzy entries in $(TRANSLATIONS)/*/LC_MESSAGES/messages.po, then run make venv."

migration: venv
	$(if $(MESSAGE),,$(error MESSAGE is missing: run make migration MESSAGE="add call recording table"))
	rm -f $(MIGRATION_SCRATCH_DB)
	HOTLINE_DATABASE_URL=sqlite:///$(abspath $(MIGRATION_SCRATCH_DB)) $(BIN)/alembic upgrade head
	HOTLINE_DATABASE_URL=sqlite:///$(abspath $(MIGRATION_SCRATCH_DB)) $(BIN)/alembic revision --autogenerate \
		--message "$(MESSAGE)"
	rm -f $(MIGRATION_SCRATCH_DB)

clean:
	rm -rf build dist .pytest_cache .ruff_cache $(INSTALL_STAMP) $(MIGRATION_SCRATCH_DB)
	rm -f $(MO_FILES)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
