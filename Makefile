# Two commands do everything on a fresh machine (Python >= 3.10 with pip):
#   make study   # venv + pinned deps, demo data if absent, features, the study, the report
#   make test    # venv + pinned deps, the whole test suite
# Point the study at a real FMA root:  make study DATA=/path/to/fma PARAMS=params/fma_medium.yaml

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?=
PARAMS ?= params/demo.yaml
JOBS   ?=
PYTEST_ARGS ?=

.PHONY: study test venv clean-outputs chromium test-browser lint

venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (a second `make` installs nothing).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,ray]'
	@# musicnn's wheel for its trained checkpoints only (read by mattlib.features.musicnn_net): its declared deps (tensorflow, numpy<1.17) are never installed
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps musicnn==0.1.0
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mattlib)" >/dev/null
	$(BIN)/python -m ipykernel install --user --name mattlib --display-name "Python (mattlib)" >/dev/null
	@# librosa's numba kernels compiled into their cache once, at install (else every feature worker's first clip takes ~40 s)
	$(BIN)/python -c "import numpy as np; from mattlib.features import stats; stats.fma518_vector(np.random.default_rng(0).standard_normal(66150).astype(np.float32), sr=22050)"
	touch $(STAMP)

study: $(STAMP)
	$(BIN)/matt study $(if $(DATA),--data $(DATA)) --params $(PARAMS) $(if $(JOBS),--jobs $(JOBS))

test: $(STAMP) chromium lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-outputs:
	rm -rf outputs/*/ 

# Browser tests (tests/test_browser.py) drive Debian's chromium: installed here with apt-get where it
# is missing and apt-get can run (root or passwordless sudo); otherwise those tests skip, saying so.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ command -v apt-get >/dev/null && SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ) && \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; } || \
	echo "chromium not installed: run 'sudo apt-get install chromium' to run the browser tests"

test-browser: $(STAMP) chromium
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)
