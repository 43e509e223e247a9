"""Tiny-CLIP pretraining: a plain open_clip checkpoint, through ``run`` and the CLI."""

import json
from contextlib import nullcontext

import open_clip
import pytest
import torch
import torch.nn.functional as F

from config import ConfigError, PretrainParams
from models.clip import load_clip
from synthetic.pretrain import (
    check_tower,
    image_embedding,
    make_optimizer,
    only_used_rows,
    run,
    train_step,
)


def test_pretrain_writes_a_plain_open_clip_checkpoint(synth_root, tmp_path):
    out = tmp_path / "tiny"
    summary = run(PretrainParams(captions=str(synth_root / "web"), out=str(out), steps=3,
                                 batch_size=8, warmup_steps=1))
    assert summary.steps == 3 and 0.0 <= summary.retrieval_top1 <= 1.0
    model, _, _ = open_clip.create_model_and_transforms("TinyCLIP-ViT-8",
                                                        pretrained=str(out / "final.pt"))
    state = torch.load(out / "final.pt", weights_only=True)
    assert set(state) == set(model.state_dict())  # plain open_clip: every key, nothing else
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    torch.manual_seed(0)
    start = open_clip.create_model("TinyCLIP-ViT-8").state_dict()
    moved = [k for k in state if not torch.equal(state[k], start[k])]
    assert "visual.proj" in moved and "text_projection" in moved  # three steps trained both
    info = json.loads((out / "final.json").read_text())
    assert info["open_clip_model"] == "TinyCLIP-ViT-8" and info["quick_gelu"] is False
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


@pytest.mark.parametrize("weight", [0.0, 0.75, 1.0])
def test_image_embedding_mixes_class_token_and_patch_average(weight):
    torch.manual_seed(0)
    visual = load_clip("TinyCLIP-ViT-8").model.visual
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        got = image_embedding(visual, images, weight)
        assert visual.output_tokens is False
        cls = F.normalize(visual(images), dim=-1)  # the config pools by the class token
        visual.pool_type = "avg"  # open_clip's own average pooling of the same tower
        avg = F.normalize(visual(images), dim=-1)
    assert not torch.allclose(cls, avg, atol=1e-3)
    assert torch.allclose(got, F.normalize(weight * avg + (1 - weight) * cls, dim=-1), atol=1e-5)


def test_pretrain_rejects_a_bad_patch_weight_or_tower(synth_root, tmp_path):
    with pytest.raises(ConfigError, match=r"pretrain.patch_weight: 1.5 is not in \[0, 1\]"):
        run(PretrainParams(captions=str(synth_root / "web"), out=str(tmp_path / "a"), steps=1,
                           patch_weight=1.5))
    assert not (tmp_path / "a").exists()
    visual = load_clip("TinyCLIP-ViT-8").model.visual
    visual.pool_type = "avg"
    with pytest.raises(ConfigError, match="pretrain.model: TinyCLIP-ViT-8 pools by 'avg'"):
        check_tower(visual, PretrainParams())


def _train(model, images, tokens, steps, used_rows):
    with only_used_rows(model, tokens) if used_rows else nullcontext():
        opt = make_optimizer(model, PretrainParams(lr=1e-2))
        for _ in range(steps):
            train_step(model, opt, images, tokens, 0.75)
    return model.state_dict()


def test_training_only_the_used_token_rows_changes_no_bit():
    torch.manual_seed(0)
    bundle = load_clip("TinyCLIP-ViT-8")
    start = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    tokens = bundle.tokenizer(["a photo of sky and grass.", "an image with a car.", "a kite."])
    images = torch.randn(3, 3, 64, 64)
    full = {k: v.clone() for k, v in _train(bundle.model, images, tokens, 4, False).items()}
    bundle.model.load_state_dict(start)
    rows = _train(bundle.model, images, tokens, 4, True)
    assert isinstance(bundle.model.token_embedding, torch.nn.Embedding)  # restored
    assert full.keys() == rows.keys()
    assert all(torch.equal(full[k], rows[k]) for k in full)
    used = torch.unique(tokens)
    table = rows["token_embedding.weight"]
    assert not torch.equal(table[used], start["token_embedding.weight"][used])
    unused = torch.ones(len(table), dtype=torch.bool)
    unused[used] = False
    assert torch.equal(table[unused], start["token_embedding.weight"][unused])
    with only_used_rows(bundle.model, tokens), pytest.raises(IndexError):
        bundle.model.token_embedding(torch.nonzero(unused)[:1, 0])  # not read as another row
