# Two entry points (see README): `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast setup clean demo-luts demo-llama demo-data

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "hwpareto needs Python 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel; a looser torch spec would pull gigabytes of CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,openvino]'
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

# Regenerates the shipped LUTs data/luts/<device>.csv: every distinct layer of the demo spaces (and of the gpt-stdlib
# built-in) on each simulated preset (the local CPU is profiled by `hwpareto demo` itself). About 20 minutes on 2 cores.
# The Llama demo space is registered from its shipped folder as `hwpareto demo` does (pareto/_demo.py HF_OPTIONS).
DEMO_SPACES := mbv3-digits gpt-stdlib llama-stdlib
SIM_PRESETS := npu-tpu npu-edgetpu cim-sram-analog cim-sram-digital cim-reram
DEMO_LLAMA := data/demo/llama-stdlib
demo-luts: $(STAMP)
	rm -f data/luts/.build.db
	$(BIN)/hwpareto space from-hf $(DEMO_LLAMA) --name llama-stdlib --batch 1 --no-importance --store data/luts/.build.db
	for d in $(SIM_PRESETS); do \
	  for s in $(DEMO_SPACES); do $(BIN)/hwpareto profile --device $$d --space $$s --workers 2 --store data/luts/.build.db || exit 1; done; \
	  $(BIN)/hwpareto lut export --device $$d --out data/luts/$$d.csv --store data/luts/.build.db || exit 1; \
	done
	rm -f data/luts/.build.db*

# Regenerates the demo's Llama SuperNet, its perplexity table, then every shipped LUT (about 40 minutes on 2 cores).
demo-data: $(STAMP)
	$(MAKE) demo-llama
	$(MAKE) demo-luts

# Regenerates the demo's Llama SuperNet data/demo/llama-stdlib/ (trained here from data/demo/llama-stdlib.json on the
# Python standard library, sandwich rule) and its perplexity table; about 20 minutes on 2 cores.
demo-llama: $(STAMP)
	rm -rf data/demo/.build.db* $(DEMO_LLAMA)
	$(BIN)/hwpareto space from-hf $(DEMO_LLAMA).json --name llama-stdlib-init --batch 1 --store data/demo/.build.db
	$(BIN)/hwpareto train-supernet --space llama-stdlib-init --data stdlib --steps 1500 --largest-only 500 \
	  --batch-size 16 --lr 2e-3 --seed 0 --out $(DEMO_LLAMA) --store data/demo/.build.db
	$(BIN)/hwpareto space from-hf $(DEMO_LLAMA) --name llama-stdlib --batch 1 --no-importance --store data/demo/.build.db
	$(BIN)/hwpareto eval-subnets --space llama-stdlib --data stdlib -n 500 --seed 0 \
	  --out data/demo/llama-stdlib_accuracy.csv --store data/demo/.build.db
	rm -f data/demo/.build.db*

clean:
	rm -rf $(VENV) hwpareto-demo .pytest_cache
