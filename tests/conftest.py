"""Shared tiny data: a small synthetic world and its sa1b shards, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    from config import SynthParams
    from synthetic.synth import run

    out = tmp_path_factory.mktemp("synthetic")
    run(SynthParams(out=str(out), train=12, val=4, web=24, size=64, seed=0))
    return out


@pytest.fixture(scope="session")
def shard_dir(synth_root, tmp_path_factory) -> Path:
    from config import MasksParams
    from pipeline.masks import run

    out = tmp_path_factory.mktemp("shards") / "sa1b"
    run(MasksParams(input=str(synth_root / "train" / "images"), out=str(out), shard_size=5))
    return out
