# Two entry points (README Quick start): `make repro` and `make test`. Both create .venv first.
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: repro test lint bench clean-venv

.venv/ready: requirements.txt
	python3 -m venv .venv
	.venv/bin/pip install --disable-pip-version-check -q -r requirements.txt
	touch .venv/ready

repro: .venv/ready
	.venv/bin/dvc repro

test: .venv/ready
	.venv/bin/ruff check .
	$(PY) -m pytest -q

lint: .venv/ready
	.venv/bin/ruff check .

clean-venv:
	rm -rf .venv
