# Two entry points (README Quick start): `make repro` and `make test`. Both create .venv first.
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/.venv/bin:$(PATH)

SHELL := /bin/bash
.PHONY: repro ablations test lint bench clean-venv

.venv/ready: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --disable-pip-version-check -q -r requirements.txt
	touch .venv/ready

repro: .venv/ready
	.venv/bin/dvc repro

# RESULTS.md's ablation table: each row is one `dvc exp run` against the committed default, run
# in a temporary copy (the workspace keeps the default); `dvc exp show` lists them afterwards.
# A row is NAME:KEY=VALUE[+KEY=VALUE...].
ABLATIONS := seed1:train.seed=1 seed2:train.seed=2 no-clustering:train.use_clustering=false \
	no-momentum:train.use_momentum=false k8:train.num_prompts=8 k16:train.num_prompts=16 \
	k32:train.num_prompts=32 superpixel-masks:masks.generator=superpixel \
	strong-aug:train.strong_aug=true k64:train.num_prompts=64 \
	pixelclip-dense:train.dense_mode=pixelclip+evaluate.dense_mode=pixelclip \
	pixelclip-dense-seed1:train.dense_mode=pixelclip+evaluate.dense_mode=pixelclip+train.seed=1 \
	pixelclip-dense-seed2:train.dense_mode=pixelclip+evaluate.dense_mode=pixelclip+train.seed=2

ablations: .venv/ready
	for row in $(ABLATIONS); do sets=$${row#*:}; \
		.venv/bin/dvc exp run --temp -n $${row%%:*} -S $${sets//+/ -S } || exit 1; done

test: .venv/ready
	.venv/bin/ruff check .
	$(PY) -m pytest -q

lint: .venv/ready
	.venv/bin/ruff check .

clean-venv:
	rm -rf .venv
