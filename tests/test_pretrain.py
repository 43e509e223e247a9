"""Tiny-CLIP pretraining: a plain open_clip checkpoint, through ``run`` and the CLI."""

import json

import open_clip
import pytest
import torch

from config import PretrainParams
from train.pretrain import run


def test_pretrain_writes_a_plain_open_clip_checkpoint(synth_root, tmp_path):
    out = tmp_path / "tiny"
    summary = run(PretrainParams(captions=str(synth_root / "web"), out=str(out), steps=3,
                                 batch_size=8, warmup_steps=1))
    assert summary.steps == 3 and 0.0 <= summary.retrieval_top1 <= 1.0
    model, _, _ = open_clip.create_model_and_transforms("TinyCLIP-ViT-8",
                                                        pretrained=str(out / "final.pt"))
    state = torch.load(out / "final.pt")
    assert torch.equal(model.visual.proj, state["visual.proj"])
    assert json.loads((out / "params.json").read_text())["steps"] == 3
    assert (out / "log.jsonl").read_text().count("\n") == 2  # steps 0 and 2


def test_pretrain_missing_captions(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain.captions"):
        run(PretrainParams(captions=str(tmp_path), out=str(tmp_path / "o"), steps=1))


def test_cli_pretrain(synth_root, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    out = tmp_path / "cli"
    result = CliRunner().invoke(cli, [
        "pretrain", "--captions", str(synth_root / "web"), "--out", str(out), "--steps", "2",
        "--set", "pretrain.batch_size=4"])
    assert result.exit_code == 0, result.output
    assert "pretrain: 2 steps" in result.output and (out / "final.pt").is_file()
