# b24sms — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: run test setup migrate superuser lint clean help screenshots

help:
	@echo "make run   - set up and start web, worker and beat (and the sandbox fakes when no keys are set)"
	@echo "make test  - set up and run the whole test suite"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)
	mkdir -p var

migrate: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable

superuser: migrate
	$(BIN)/python manage.py ensure_superuser

run: superuser
	$(BIN)/python manage.py run_backoffice

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

screenshots: setup  ## refresh docs/screenshots/ from the browser tests
	B24SMS_SCREENSHOTS=1 B24SMS_REQUIRE_BROWSER=1 $(BIN)/python -m pytest tests/browser -q

clean:
	rm -rf var .pytest_cache
