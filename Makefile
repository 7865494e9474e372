# Every target creates .venv on first use and installs the project into it.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-dates run bench lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pointsbot demo

test: $(STAMP)
	@test -n "$$POINTSBOT_TEST_POSTGRES" || echo "make test: PostgreSQL conformance tests skipped" \
		"(no POINTSBOT_TEST_POSTGRES); to run them: eval \"\$$(.ci/postgres start)\"; make test"
	$(BIN)/python -m pytest -q -n auto

# The suite on other days than today, under libfaketime (Debian package `faketime`): the
# dates around the sample programme's campaigns, sales and windows, a leap day, a far year.
DATES ?= 2026-12-02T12:00:00 2026-12-31T15:30:00 2026-12-31T16:30:00 2027-07-01T12:00:00 \
	2027-12-31T12:00:00 2028-02-29T12:00:00 2031-06-15T12:00:00
test-dates: $(STAMP)
	@command -v faketime >/dev/null || { echo "test-dates needs libfaketime: apt-get install faketime"; exit 2; }
	@failed=0; for d in $(DATES); do \
		out=$$(faketime -f "@$$(echo $$d | tr T ' ')" \
			$(BIN)/python -m pytest -q -p no:cacheprovider 2>&1) || failed=1; \
		echo "$$d UTC: $$(echo "$$out" | tail -1)"; \
	done; exit $$failed

run: $(STAMP)
	$(BIN)/pointsbot run --config config.toml

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
