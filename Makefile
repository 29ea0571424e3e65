# charlm: set-up, tests, demo and benchmark. Everything installs into ./.venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHARLM := $(VENV)/bin/charlm
DEMO := demo

.PHONY: install dev test test-slow demo bench bench-mpi clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[dev,mpi]'
	touch $@

install dev: $(VENV)/.installed

test: $(VENV)/.installed  ## unit, kernel, model and CLI tests (torch reference tests run when torch is installed)
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed  ## the long-running tests marked slow
	$(PY) -m pytest -q -m slow

demo: $(VENV)/.installed  ## train about a minute on the bundled corpus, then sample, score, plot and explore
	mkdir -p $(DEMO)
	$(CHARLM) train corpora/shipslog.txt -o $(DEMO)/shipslog.safetensors --hidden 256 --time 60s
	$(CHARLM) info -m $(DEMO)/shipslog.safetensors
	$(CHARLM) sample -m $(DEMO)/shipslog.safetensors --temp 0.8 --length 400 --seed 1
	$(CHARLM) score -m $(DEMO)/shipslog.safetensors "Wind north, a gale. Sky stormy. Sea heavy." \
		"Sea wind heavy north stormy, sky a gale."
	printf 'The cook caught three fish.\nThe fish caught three cooks.\n' | $(CHARLM) score -m $(DEMO)/shipslog.safetensors --json
	$(CHARLM) plot $(DEMO)/shipslog.metrics.jsonl --x tokens
	tail -n 60 corpora/shipslog.txt > $(DEMO)/logbook-end.txt
	$(CHARLM) explore --file $(DEMO)/logbook-end.txt -m $(DEMO)/shipslog.safetensors -o $(DEMO)/explore.html

clean:
	rm -rf $(DEMO) .pytest_cache .hypothesis build *.egg-info

bench: $(VENV)/.installed  ## charlm vs PyTorch (if installed) on this CPU; see README "Performance"
	$(PY) -m pip install -q threadpoolctl
	$(PY) -m benchmarks.bench

bench-mpi: $(VENV)/.installed  ## 2 ranks x 1 thread against 1 process x 2 threads (docs/distributed.md)
	$(PY) -m benchmarks.mpi
