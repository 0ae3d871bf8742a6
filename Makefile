# sharedml — every target creates or updates .venv itself, so a fresh clone needs
# only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-full test-parallel lint bench clean venv fuzz

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sharedml demo

# the 25 slowest tests are listed at the end, so CI's budget (25 min) is watched by test
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

# test, plus the cases CI leaves out because they repeat a covered failure mode at a
# later, longer step (the fault matrix: every role at every step; see tests/faults/)
test-full: $(STAMP)
	SHAREDML_FULL_MATRIX=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# test on two workers (pytest-xdist), each test file whole on one (a module's cluster
# or browser is set up once) and every Ray test (tests/scale, xdist_group "ray") on one,
# beside one local Ray cluster (tests/conftest.py groups the rest by file), each worker
# its own PostgreSQL database; the same tests as test. Opt-in: not yet run whole on an
# idle machine.
test-parallel: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Coverage-guided fuzzing of the job-spec parser (atheris; not in CI). The corpus it
# grows stays in .fuzz/spec; a crash or hang is written to .fuzz/.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[fuzz]"
	mkdir -p .fuzz/spec
	cp -n examples/*.yaml .fuzz/spec/
	$(BIN)/python tests/fuzz/atheris_spec.py .fuzz/spec -max_total_time=$(FUZZ_SECONDS) \
		-timeout=10 -rss_limit_mb=2048 -artifact_prefix=.fuzz/

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .fuzz
