# Two entry points (see README): `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast setup clean demo-luts

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "hwpareto needs Python 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel; a looser torch spec would pull gigabytes of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hwpareto demo

test: $(STAMP)
	$(BIN)/ruff check hwpareto supernet pareto predictors profilers dashboard tests benchmarks examples
	$(BIN)/ruff format --check hwpareto supernet pareto predictors profilers dashboard tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile

# the inner loop: lint and every test but the slow end-to-end ones (under 2 minutes on 2 cores)
test-fast: $(STAMP)
	$(BIN)/ruff check hwpareto supernet pareto predictors profilers dashboard tests benchmarks examples
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

# Regenerates the shipped LUTs data/luts/<device>.csv: every distinct layer of the demo spaces on each simulated
# preset (the local CPU is profiled by `hwpareto demo` itself). About 15 minutes on 2 cores.
DEMO_SPACES := mbv3-digits gpt-stdlib
SIM_PRESETS := npu-tpu npu-edgetpu cim-sram-analog cim-sram-digital cim-reram
demo-luts: $(STAMP)
	rm -f data/luts/.build.db
	for d in $(SIM_PRESETS); do \
	  for s in $(DEMO_SPACES); do $(BIN)/hwpareto profile --device $$d --space $$s --workers 2 --store data/luts/.build.db || exit 1; done; \
	  $(BIN)/hwpareto lut export --device $$d --out data/luts/$$d.csv --store data/luts/.build.db || exit 1; \
	done
	rm -f data/luts/.build.db*

clean:
	rm -rf $(VENV) hwpareto-demo .pytest_cache
