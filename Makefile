# `make run`: set everything up and start the app.  `make test`: set everything up and run
# every check CI runs. Both are safe to repeat; they reinstall only what changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-under-load lint bench bench-gui screenshot train loco clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.app: pyproject.toml | $(BIN)/python
	bash scripts/system-deps.sh
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	bash scripts/system-deps.sh --test
	$(BIN)/pip install -q -e ".[train,dev]"
	touch $(VENV)/.app $@

run: $(VENV)/.app
	$(BIN)/ser-live gui

lint: $(VENV)/.dev
	$(BIN)/ruff check ser_live training tests benchmarks
	$(BIN)/ruff format --check ser_live training tests benchmarks

test: lint
	bash tests/audio_env.sh
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -ra

# The suite with every core kept busy by a CPU hog: tests must not need a quiet machine.
test-under-load: lint
	bash tests/audio_env.sh
	bash tests/under_load.sh $(BIN)/python -m pytest -ra

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_engine.py

bench-gui: $(VENV)/.dev
	bash tests/audio_env.sh
	xvfb-run -a -s "-screen 0 1280x800x24" $(BIN)/python benchmarks/bench_gui.py

screenshot: $(VENV)/.dev
	bash tests/audio_env.sh
	xvfb-run -a -s "-screen 0 1280x900x24" $(BIN)/python benchmarks/screenshot.py docs

# The shipped model's recipe: one 1-D CNN on all five corpora beside the checkout (or
# DATA=...), each window's loss over the emotions its corpus has, with an utterance head
# that hears each phrase against the voice's others (models/README.md).
DATA ?= ../shared/datasets
RECIPE := --epochs 16 --members 1 --window-stride 2 --partial-labels --utterance-head
# The shipped model averages the new network with the previous model (RAVDESS + TESS).
MEMBER := models/ser_cnn_rt_int8.tflite

# Retrain the shipped model from scratch (about 20 minutes on 2 cores, most of it the
# windows; cached for later runs).
train: $(VENV)/.dev
	$(BIN)/python -m training.loco $(DATA) $(RECIPE) --member $(MEMBER) --no-loco --install

# The leave-one-corpus-out yardstick of the model card: the previous release's model (the
# member) as the baseline row; the recipe held out corpus by corpus with that member, on
# the three corpora the member never heard, each scored clip by clip and as calibrated
# sessions, one per speaker; then the new network's recipe alone on all five, and
# RAVDESS's actors held out of it in two folds (33 minutes on 2 cores with the windows
# cached). The reports land in training/runs/; the card's copies are models/card/loco*.md.
loco: $(VENV)/.dev
	$(BIN)/python -m training.loco $(DATA) $(RECIPE) --member $(MEMBER) \
		--hold-out nemo,korean,emospeech --baseline $(MEMBER) --calibrated
	$(BIN)/python -m training.loco $(DATA) $(RECIPE) --calibrated --speaker-folds ravdess:2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
