# make help: list targets.  make train / make test create .venv and install requirements.lock (with uv) when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
LOCK   := requirements.lock
# uv does not read pip's configuration: pip's mirror / wheel folders, as uv arguments
UV_INDEX = $$($(PY) scripts/uv_index_args.py)
ARGS   ?=
# the folders ruff checks (a generated project may lack bench/)
LINTED := $(wildcard src tests bench core)
# The library (expkit): in this repository its core/ folder, editable, with a plain path entry
# (compat mode) so Hydra finds the plugins in its hydra_plugins namespace package. A project
# generated with copier pins the template commit it came from instead (a git URL, subdirectory
# core/); `make update-template` moves the pin.
# % if not library_pinned
LIBRARY = -e ./core --config-settings editable_mode=compat
# % else
# %   filter replace("#| ", "")
#| LIBRARY = expkit@<!--= library_url =-->@<!--= _copier_conf.vcs_ref_hash =-->\#subdirectory=core
# %   endfilter
# % endif
# named after the contents it installs (lock + pyproject + library pin): a fresh clone or a branch switch that
# only changes file times does not reinstall; an edited lock does
STAMP  := $(VENV)/.installed-$(shell (cat $(LOCK) pyproject.toml core/pyproject.toml; echo '$(LIBRARY)') 2>/dev/null | cksum | cut -d' ' -f1)
# the suites on 2 workers (CI has 2 cores); tests that must not overlap share an xdist_group
# (one SLURM cluster, the GPU pool, the hung-job time limits), which --dist loadgroup keeps on one worker
JOBS   ?= 2
XDIST   = -n $(JOBS) --dist loadgroup

.DEFAULT_GOAL := help
.PHONY: help install lock train test test-template test-library test-fast check docs eval predict export sweep search summary runs bench bench-memory lint typecheck format clean update-template

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-14s %s\n", $$1, $$2}'

# --compile-bytecode and compileall: uv writes no .pyc (pip does), and where PYTHONDONTWRITEBYTECODE
# is set (CI images) Python never does either: every process would compile torch and Lightning again
$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if test -x $(UV) || $(PY) -m pip install -q uv; then \
		echo "$(UV) pip sync $(LOCK)"; \
		$(UV) pip sync --python $(PY) --compile-bytecode $(UV_INDEX) $(LOCK) && \
		$(UV) pip install --python $(PY) --compile-bytecode --no-deps --no-build-isolation $(LIBRARY) -e .; \
	else \
		echo "uv cannot be installed here: installing $(LOCK) with pip"; \
		$(PY) -m pip install -r $(LOCK) && $(PY) -m pip install --no-deps --no-build-isolation $(LIBRARY) -e .; \
	fi
	$(PY) -m compileall -q $(wildcard core/expkit core/hydra_plugins) src   # the editable sources too
	$(PY) -m pip check
	rm -f $(VENV)/.installed-* && touch $@ $(VENV)/.installed

install: $(STAMP) ## create .venv and install requirements.lock with uv (done by train/test when missing)

lock: ## re-resolve requirements.txt into requirements.lock (ARGS=--upgrade: take new releases)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install -q uv
	$(UV) pip compile --python $(PY) $(UV_INDEX) --custom-compile-command "make lock" requirements.txt -o $(LOCK) $(ARGS)

train: $(STAMP) ## train + test the default model on the bundled digits (ARGS="model=cnn ..." to override)
	$(PY) src/train.py $(ARGS)

# % if not library_pinned
test: check test-template test-library ## check + the template's tests + the library's tests from its wheel (what CI runs)
# % else
# %   filter replace("#| ", "")
#| test: check test-template ## lint, types, docs, then this project's tests (what CI runs)
# %   endfilter
# % endif
test-template: $(STAMP) ## the project's own tests: every model x data config, the examples, README/docs commands (TESTS=… picks files)
	$(PY) -m pytest $(or $(TESTS),tests) $(XDIST) $(ARGS)

# % if not library_pinned
test-library: $(STAMP) ## the library's tests against its wheel in a fresh venv (scripts/test_library_wheel.sh)
	PY=$(PY) scripts/test_library_wheel.sh $(XDIST) $(ARGS)
# % endif
# what every test run starts with
check: lint typecheck docs ## ruff (lint + format), mypy, pip check and the docs build: fails on any finding
	$(PY) -m pip check

docs: $(STAMP) ## build the docs site into site/ (mkdocs build --strict: a broken link or a page missing from the nav fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d site

test-fast: $(STAMP) ## the fast tests of both (skips those marked slow), from the checkout, one module per worker
	$(PY) -m pytest -m "not slow" -n auto --dist loadscope $(ARGS)

eval: $(STAMP) ## evaluate a checkpoint: make eval CKPT=logs/train/runs/<run>/checkpoints/last.ckpt
	@test -n "$(CKPT)" || (echo "usage: make eval CKPT=path/to/checkpoint.ckpt" && exit 2)
	$(PY) src/eval.py ckpt_path=$(CKPT) $(ARGS)

predict: $(STAMP) ## predict: make predict CKPT=path/to.ckpt INPUT=test|folder|image|file.pt (default test)
	@test -n "$(CKPT)" || (echo "usage: make predict CKPT=path/to/checkpoint.ckpt INPUT=test|folder|file.pt" && exit 2)
	$(PY) src/predict.py ckpt_path=$(CKPT) input=$(or $(INPUT),test) $(ARGS)

export: $(STAMP) ## export net.pt, TorchScript and ONNX (each checked): make export CKPT=path/to.ckpt
	@test -n "$(CKPT)" || (echo "usage: make export CKPT=path/to/checkpoint.ckpt" && exit 2)
	$(PY) src/export.py ckpt_path=$(CKPT) $(ARGS)

sweep: $(STAMP) ## a small grid sweep: learning rate x seed, with a summary table at the end
	$(PY) src/train.py -m optimizer.lr=1e-3,1e-2 seed=1,2 $(ARGS)

runs: $(STAMP) ## one table of every run under logs/: make runs ARGS="--tag baseline --sort val/acc_best --desc"
	$(PY) -m expkit.runs_table $(ARGS)

# % if data_torchvision
DATA_DIR ?= $(if $(wildcard ../shared/datasets/MNIST/raw),../shared/datasets,data)
bench: $(STAMP) ## speed: plain PyTorch loop vs train.py on MNIST (DATA_DIR=folder holding MNIST/raw)
	$(PY) bench/bench_train.py --data-dir $(DATA_DIR) $(ARGS)

bench-memory: $(STAMP) ## memory: peak RSS of a one-epoch MNIST run vs Lightning alone (ARGS="--rival-dir DIR")
	$(PY) bench/bench_memory.py --data-dir $(DATA_DIR) $(ARGS)

# % endif
# % if optuna
search: $(STAMP) ## an Optuna study on digits (run it again to resume): make search ARGS="hydra.sweeper.n_trials=30"
	$(PY) src/train.py -m hparams_search=digits_optuna $(ARGS)

# % endif
summary: $(STAMP) ## rebuild a sweep's summary: make summary SWEEP=logs/train/multiruns/<run>
	@test -n "$(SWEEP)" || (echo "usage: make summary SWEEP=path/to/sweep_dir" && exit 2)
	$(PY) -m expkit.sweeps.summary $(SWEEP) $(ARGS)

lint: $(STAMP) ## ruff lint + format check
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

typecheck: $(STAMP) ## mypy over src/ and the library (settings in pyproject.toml)
	$(VENV)/bin/mypy src $(wildcard core/expkit core/hydra_plugins)

format: $(STAMP) ## ruff fix + format
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

update-template: ## take the template's later changes (copier update: your edits stay; conflicts inline), then reinstall
	@test -f .copier-answers.yml && grep -q '^_src_path:' .copier-answers.yml || \
		(echo "no .copier-answers.yml with _src_path here: update-template works in a project generated with copier (docs/generate-and-update.md)" && exit 2)
	$(VENV)/bin/copier update --trust --defaults $(ARGS)
	@$(MAKE) --no-print-directory install

clean: ## remove run outputs, caches (keeps .venv and data/)
	rm -rf logs/* .pytest_cache .ruff_cache outputs multirun lightning_logs
	find . -name __pycache__ -type d -not -path "./$(VENV)/*" -exec rm -rf {} +
	touch logs/.gitkeep
