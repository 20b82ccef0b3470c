# leadbridge: `make run` runs the product on embedded defaults, `make test` runs the test suite.
# Both create .venv on first use (Python >= 3.11 needed) and are safe to run again.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTERNAL_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
EXTERNAL_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: run test test-external browser lint clean

# The package install is not --quiet: pip's lines (Collecting ..., Downloading ... with its progress bar) show a
# first install (a few minutes) moving.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "leadbridge needs Python >= 3.11 (set PYTHON=python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing leadbridge and its dependencies into $(VENV) (the first time takes a few minutes)..."
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/leadbridge run

# The admin UI tests drive Debian's Chromium (Playwright's own browser download does not work offline);
# the slow-client test runs deploy/'s nginx proxy config in front of `leadbridge web`.
CHROMIUM ?= /usr/bin/chromium
NGINX ?= /usr/sbin/nginx
browser:
	@test -x $(CHROMIUM) -a -x $(NGINX) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver nginx-light >/dev/null; \
	  else echo "the tests need Chromium and nginx: sudo apt-get install chromium chromium-driver nginx-light"; exit 1; fi; }

test: $(STAMP) browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The same suite against external PostgreSQL and Redis (CI runs both).
test-external: $(STAMP) browser
	LEADBRIDGE_TEST_DATABASE_URL=$(EXTERNAL_DATABASE_URL) LEADBRIDGE_TEST_REDIS_URL=$(EXTERNAL_REDIS_URL) \
		$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m pip install --quiet "ruff>=0.4"
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
