# Every target uses the environment in .venv at the repo root.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
MODEL   ?= qwen2.5-coder-1.5b
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: install install-dev serve test unit fuzz test-data lint bench vendor clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# llama-cpp-python builds llama.cpp from source for this machine's CPU (about 9
# minutes on 2 cores), once: the wheel is kept in LLAMA_WHEELS, so later installs and
# fresh clones take seconds. On x86-64 it is built without AMX: ggml's AMX kernels
# (0.3.36) crashed in ggml_backend_amx_mul_mat and garbled the default model's output
# on Sapphire Rapids machines that report AMX, where the AVX-512 kernels run correctly.
# The wheel is built with pip's own cache off, so a cached native build never stands in.
LLAMA_VERSION := 0.3.36
LLAMA_WHEELS  ?= $(HOME)/.cache/ponder/wheels/llama-cpp-python-$(LLAMA_VERSION)$(if $(NO_AMX),-noamx)
NO_AMX        := $(if $(filter x86_64 amd64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	@echo "building llama-cpp-python $(LLAMA_VERSION) for this CPU (once, ~9 minutes on 2 cores)..."
	CMAKE_ARGS='$(if $(NO_AMX),-DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)")' \
		$(BIN)/pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) \
		llama-cpp-python==$(LLAMA_VERSION)
	touch $@

# rapidocr-onnxruntime 1.4.4 pins opencv-python, the GUI build, which needs libGL;
# Ponder installs its other dependencies with opencv-python-headless instead
# (pyproject.toml) and rapidocr itself without its pins.
$(VENV)/.installed: pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python
	@echo "installing Ponder..."
	$(BIN)/pip install --progress-bar on --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/pip install --progress-bar on -e .
	$(BIN)/pip install --progress-bar on --no-deps rapidocr-onnxruntime==1.4.4
	touch $@

# instructor 1.17 declares jiter<0.15, which would hold openai back to 3.3 and
# pydantic-ai to a release that no longer imports; it runs fine on the newer jiter
# (the compatibility suite shows it), so it goes in without its declared pins.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	$(BIN)/pip install --progress-bar on --no-deps instructor==1.17.0
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

serve: install
	$(BIN)/ponder pull $(MODEL)
	$(BIN)/ponder serve --model $(MODEL) --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Speech the voice tests transcribe: five LibriVox clips with their transcripts.
LIBRIVOX := /usr/share/pocketsphinx/test/data/librivox
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(LIBRIVOX)/transcription:
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q pocketsphinx-testdata

# The web app's browser tests drive Debian's Chromium through Playwright; Playwright
# never downloads a browser of its own.
/usr/bin/chromium:
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium

# The shared-store tests start a private PostgreSQL server of their own (initdb on a
# free port) from Debian's binaries; the system's cluster is not used.
/usr/bin/pg_ctlcluster:
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql

test-data: $(LIBRIVOX)/transcription /usr/bin/chromium /usr/bin/pg_ctlcluster

# The suite runs several engine processes at once (servers, replicas, llama_cpp.server).
# ggml's OpenMP threads spin while they wait: beside one busy process a spinning engine
# decoded 2.5 tok/s against 7.1 passive, while alone passive costs about a fifth of the
# speed (bench/omp_wait.py, docs/benchmarks.md), so only the tests ask for it.
test: install-dev lint test-data
	OMP_WAIT_POLICY=PASSIVE PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/pytest -q

# The fast suite: no model, no browser, no database server (the tests marked e2e are left out).
# Two workers: most of its time is spent waiting on timers, processes and sockets.
unit: install-dev
	$(BIN)/pytest -q -m "not e2e" -n 2

# The API fuzzed with new examples each run, ten times as many as `make test` sends.
fuzz: install-dev test-data
	PONDER_FUZZ=explore $(BIN)/pytest -q tests/test_fuzz_api.py

bench: install
	$(BIN)/python bench/overhead.py

# The web app's third-party assets are committed (src/ponder/web/vendor, versions in
# its VERSIONS file), so running Ponder needs no Node. This refreshes them from npm.
WEB_VENDOR := src/ponder/web/vendor
vendor:
	mkdir -p build/vendor && cd build/vendor && npm install --no-save marked@18.2.1 dompurify@3.4.18 \
		@highlightjs/cdn-assets@11.12.0 katex@0.19.1
	cp build/vendor/node_modules/marked/lib/marked.umd.js $(WEB_VENDOR)/marked.js
	cp build/vendor/node_modules/dompurify/dist/purify.min.js $(WEB_VENDOR)/
	cp build/vendor/node_modules/@highlightjs/cdn-assets/highlight.min.js $(WEB_VENDOR)/
	cp build/vendor/node_modules/@highlightjs/cdn-assets/styles/github.min.css $(WEB_VENDOR)/hljs-light.css
	cp build/vendor/node_modules/@highlightjs/cdn-assets/styles/github-dark.min.css $(WEB_VENDOR)/hljs-dark.css
	cp build/vendor/node_modules/katex/dist/katex.min.js $(WEB_VENDOR)/
	cp build/vendor/node_modules/katex/dist/fonts/*.woff2 $(WEB_VENDOR)/fonts/
	sed -E 's/,url\(fonts\/[^)]+\.woff\) format\("woff"\),url\(fonts\/[^)]+\.ttf\) format\("truetype"\)//g' \
		build/vendor/node_modules/katex/dist/katex.min.css > $(WEB_VENDOR)/katex.min.css

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
