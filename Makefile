# b24sms — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
# manage.py alone uses the production settings; `make run` and its steps name the development ones
# (DEBUG on, runserver on 127.0.0.1 only). pytest names its own (pytest.ini).
MANAGE := DJANGO_SETTINGS_MODULE=$${DJANGO_SETTINGS_MODULE:-b24sms.settings.local} $(BIN)/python manage.py

.PHONY: run test setup migrate superuser lint clean help screenshots

help:
	@echo "make run   - set up and start web, worker and beat (and the sandbox fakes when no keys are set)"
	@echo "make test  - set up and run the whole test suite"
	@echo "make lint  - ruff lint and format check"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)
	mkdir -p var

migrate: setup
	$(MANAGE) migrate --noinput
	$(MANAGE) createcachetable

superuser: migrate
	$(MANAGE) ensure_superuser

run: superuser
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(MANAGE) run_backoffice

lint: setup  ## ruff: lint and format check (pyproject.toml); CI runs it before the tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

screenshots: setup  ## refresh docs/screenshots/ from the browser tests
	B24SMS_SCREENSHOTS=1 B24SMS_REQUIRE_BROWSER=1 $(BIN)/python -m pytest tests/browser -q

clean:
	rm -rf var .pytest_cache
