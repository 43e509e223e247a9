"""Loading, dense features, learnable prompts and the open_clip export."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.clip import encode_texts, load_clip
from models.dense import _dense_block, _tokens, dense_features
from models.prompts import PromptLearner


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return load_clip("TinyCLIP-ViT-8", "")


def test_load_clip_missing_path_names_key_and_path(tmp_path):
    missing = str(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="train.clip_pretrained.*nope.pt"):
        load_clip("TinyCLIP-ViT-8", missing)


def official_dense(visual, images: torch.Tensor) -> torch.Tensor:
    """The official PixelCLIP ``forward_dense`` restated from the raw weights, in its own
    layout (tokens first): the last block's value path through the output projection for
    every token, plus the block's input at the class token, then QuickGELU's MLP."""
    x = visual.conv1(images).flatten(2).permute(2, 0, 1)  # (L, N, C)
    cls = visual.class_embedding.view(1, 1, -1).expand(1, x.shape[1], -1)
    x = torch.cat([cls, x])
    old, new = visual.grid_size[0], round((x.shape[0] - 1) ** 0.5)
    pos = visual.positional_embedding
    grid = pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    x = x + torch.cat([pos[:1], grid[0].reshape(pos.shape[1], -1).t()])[:, None]
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = block(x.transpose(0, 1)).transpose(0, 1)
    last = blocks[-1]
    width = x.shape[-1]
    qkv = F.linear(F.layer_norm(x, (width,), last.ln_1.weight, last.ln_1.bias, 1e-5),
                   last.attn.in_proj_weight, last.attn.in_proj_bias)
    v = F.linear(qkv[..., 2 * width:], last.attn.out_proj.weight, last.attn.out_proj.bias)
    v = v + x[:1]
    h = F.layer_norm(v, (width,), last.ln_2.weight, last.ln_2.bias, 1e-5)
    h = F.linear(h, last.mlp.c_fc.weight, last.mlp.c_fc.bias)
    v = v + F.linear(h * torch.sigmoid(1.702 * h), last.mlp.c_proj.weight, last.mlp.c_proj.bias)
    out = F.layer_norm(v, (width,), visual.ln_post.weight, visual.ln_post.bias, 1e-5)
    out = (out @ visual.proj)[1:].permute(1, 2, 0)
    return out.reshape(out.shape[0], -1, new, new)


def test_dense_features_any_resolution(bundle):
    visual = bundle.model.visual
    square = torch.randn(2, 3, 64, 64)
    assert dense_features(visual, square).shape == (2, 128, 8, 8)
    tall = dense_features(visual, torch.randn(1, 3, 96, 40))
    assert tall.shape == (1, 128, 12, 5) and torch.isfinite(tall).all()
    with pytest.raises(ValueError, match="divisible"):
        dense_features(visual, torch.randn(1, 3, 60, 64))
    with torch.no_grad():  # at the pretraining size no position is interpolated
        ref = dense_features(visual, square[:1])
        assert torch.allclose(dense_features(visual, square)[:1], ref, atol=1e-5)


def test_dense_block_maskclip_is_the_block_without_token_mixing(bundle):
    """Attention restricted to the diagonal is the value path with each token's residual."""
    block = bundle.model.visual.transformer.resblocks[-1]
    x = torch.randn(2, 17, 128)
    diagonal = torch.full((17, 17), float("-inf")).fill_diagonal_(0.0)
    want = block(x, attn_mask=diagonal)
    assert torch.allclose(want, _dense_block(block, x, "maskclip"), atol=1e-5)
    assert not torch.allclose(want, _dense_block(block, x, "pixelclip"), atol=1e-2)
    with pytest.raises(ValueError, match="dense mode"):
        _dense_block(block, x, "clear")


def test_dense_features_equal_the_official_path_on_vit_b16_quickgelu():
    """ViT-B/16 with OpenAI's activation (QuickGELU), random weights, at the paper's 320²."""
    torch.manual_seed(0)
    visual = load_clip("ViT-B-16-quickgelu", "").model.visual
    images = torch.randn(1, 3, 320, 320)
    with torch.no_grad():
        want = official_dense(visual, images)
        got = dense_features(visual, images)
        other = dense_features(visual, images, "maskclip")
    assert got.shape == (1, 512, 20, 20)
    assert (got - want).abs().max() < 1e-4 * want.abs().max()
    cosine = F.cosine_similarity(other, want, dim=1).mean()
    assert cosine < 0.5  # the per-token residual is another feature altogether


def test_convnext_dense_features_are_its_head_at_every_location():
    """ConvNeXt-B (open_clip convnext_base_w_320, random weights): the trunk's last feature
    map, the head's norm and projection per location, stride 32. On a one-cell map this is
    exactly the tower's pooled embedding."""
    from models.dense import grid_size, stride

    torch.manual_seed(0)
    visual = load_clip("convnext_base_w_320", "").model.visual
    assert stride(visual) == 32 and grid_size(visual, 640) == 20
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        got = dense_features(visual, images)
        feats = visual.trunk.forward_features(images).permute(0, 2, 3, 1)
        norm = visual.trunk.head.norm
        want = F.layer_norm(feats, feats.shape[-1:], norm.weight, norm.bias, norm.eps)
        want = (want @ visual.head.proj.weight.t()).permute(0, 3, 1, 2)
        pooled = visual(images[..., :32, :32])
        single = dense_features(visual, images[..., :32, :32])
    assert got.shape == (1, 640, 2, 3) and torch.allclose(got, want, atol=1e-4)
    assert torch.allclose(single[:, :, 0, 0], pooled, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by 32"):
        dense_features(visual, torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="dense mode 'sclip' changes a ViT"):
        dense_features(visual, images, "sclip")


def test_encode_texts_normalised(bundle):
    feats = encode_texts(bundle.model, bundle.tokenizer, ["a photo of a car.", "sky"])
    assert feats.shape == (2, 128)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_prompt_words_come_from_the_given_vocabulary(bundle, tmp_path):
    import json

    from models.prompts import read_vocab, vocab_record

    model, tok = bundle.model, bundle.tokenizer
    record = vocab_record(tok(["a photo of sky and grass."]), tok)
    assert record["token_ids"] == sorted(record["token_ids"])
    assert set(record["words"]) == {"a", "photo", "of", "sky", "and", "grass", "."}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(record))
    ids = read_vocab(path)
    prompts = PromptLearner(model, tok, num_prompts=6, length=3, template="a {}.", vocab=ids)
    rows = model.token_embedding.weight[torch.tensor(ids)]
    start = prompts.token_embeddings.detach().reshape(-1, rows.shape[1])
    assert all(any(torch.equal(e, r) for r in rows) for e in start)
    path.write_text("{}")
    with pytest.raises(ValueError, match="train.prompt_vocab: .*vocab.json"):
        read_vocab(path)
    with pytest.raises(FileNotFoundError, match="train.prompt_vocab"):
        read_vocab(tmp_path / "none.json")


def test_prompt_learner_matches_encode_text_for_real_tokens(bundle):
    """Slots filled with the embeddings of real words give that sentence's text feature."""
    model, tok = bundle.model, bundle.tokenizer
    prompts = PromptLearner(model, tok, num_prompts=2, length=2, template="a photo of a {}.")
    words = tok(["red car"])[0, 1:3]
    with torch.no_grad():
        prompts.token_embeddings.copy_(model.token_embedding.weight[words].expand(2, -1, -1))
        got = torch.nn.functional.normalize(prompts(model), dim=-1)
    want = encode_texts(model, tok, ["a photo of a red car."])
    assert got.shape == (2, 128)
    assert torch.allclose(got[0], want[0], atol=1e-5)


def test_weights_of_the_other_activation_and_foreign_files_are_one_line_errors(tmp_path):
    import json

    from config import ConfigError
    from models.clip import write_weights_info

    with pytest.raises(ConfigError, match="train.clip_pretrained: 'openai' was trained with "
                       "QuickGELU but train.clip_model 'ViT-B-16' builds GELU; use "
                       "'ViT-B-16-quickgelu'"):
        load_clip("ViT-B-16", "openai")  # refused before any download is tried
    path = tmp_path / "final.pt"
    torch.save(load_clip("TinyCLIP-ViT-8", "").model.state_dict(), path)
    info = write_weights_info(path, "TinyCLIP-ViT-8", "")
    assert json.loads(info.read_text())["quick_gelu"] is False
    assert load_clip("TinyCLIP-ViT-8", str(path), key="evaluate.baseline").model is not None
    info.write_text(json.dumps({"open_clip_model": "TinyCLIP-ViT-8-quickgelu",
                                "quick_gelu": True}))
    with pytest.raises(ConfigError, match="evaluate.baseline: .*final.pt .per final.json. was "
                       "trained with QuickGELU but evaluate.clip_model 'TinyCLIP-ViT-8'"):
        load_clip("TinyCLIP-ViT-8", str(path), key="evaluate.baseline")
    with pytest.raises(ConfigError, match="evaluate.clip_model: unknown open_clip model 'Nope'"):
        load_clip("Nope", "", key="evaluate.baseline")
    for content in (b"garbage", None):
        bad = tmp_path / "bad.pt"
        if content is None:  # a training checkpoint is not a model state dict
            torch.save({"model": {}, "step": 3}, bad)
        else:
            bad.write_bytes(content)
        with pytest.raises(ValueError, match=r"evaluate.checkpoint: .*bad.pt is not an open_clip "
                           r"TinyCLIP-ViT-8 state dict \(") as info_:
            load_clip("TinyCLIP-ViT-8", str(bad), key="evaluate.checkpoint")
        assert "\n" not in str(info_.value)


def restated_last_block(block, x: torch.Tensor, mode: str, grid) -> torch.Tensor:
    """ClearCLIP, SCLIP and NACLIP's last block from their papers, head by head, tokens first
    as their code lays them out: ``x`` is ``(L, C)`` for one image."""
    heads, width = block.attn.num_heads, x.shape[-1]
    d = width // heads
    y = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, 1e-5)
    q, k, v = F.linear(y, block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, -1)
    h, w = grid
    prior = torch.zeros(len(x), len(x))
    for a in range(h * w):
        for b in range(h * w):
            dist2 = (a // w - b // w) ** 2 + (a % w - b % w) ** 2
            prior[1 + a, 1 + b] = math.exp(-dist2 / (2 * 5.0 ** 2))
    out = []
    for i in range(heads):
        qi, ki, vi = (t[:, i * d:(i + 1) * d] for t in (q, k, v))
        qq, kk = qi @ qi.t() / math.sqrt(d), ki @ ki.t() / math.sqrt(d)
        attn = {"clearclip": qq.softmax(-1), "sclip": qq.softmax(-1) + kk.softmax(-1),
                "naclip": (kk + prior).softmax(-1)}[mode]
        out.append(attn @ vi)
    out = F.linear(torch.cat(out, -1), block.attn.out_proj.weight, block.attn.out_proj.bias)
    if mode != "sclip":
        return out
    y = x + out
    hidden = F.layer_norm(y, (width,), block.ln_2.weight, block.ln_2.bias, 1e-5)
    return y + block.mlp(hidden)


@pytest.mark.parametrize("mode", ["clearclip", "sclip", "naclip"])
def test_training_free_dense_modes_equal_their_papers(bundle, mode):
    visual = bundle.model.visual
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        got = dense_features(visual, images, mode)
        x, grid = _tokens(visual, images)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        want = torch.stack([restated_last_block(last, xi, mode, grid) for xi in x])
        want = (visual.ln_post(want[:, 1:]) @ visual.proj).transpose(1, 2).reshape(got.shape)
    assert got.shape == (2, 128, 6, 8)
    assert torch.allclose(got, want, atol=1e-4)
    others = {m: dense_features(visual, images, m) for m in ("maskclip", "pixelclip")}
    assert all(not torch.allclose(got, o, atol=1e-2) for o in others.values())


@pytest.mark.slow
def test_convnext_trains_evaluates_and_segments(shard_dir, synth_root, tmp_path):
    """The paper's ConvNeXt-B row end to end, random weights, tiny sizes: train (whole tower,
    ε = 1), evaluate and segment with the export."""
    import json

    from click.testing import CliRunner

    from cli import cli

    out = tmp_path / "run"
    train = ["train", "--shards", str(shard_dir), "--out", str(out), "--steps", "1",
             "--batch-size", "2", "--clip-pretrained", ""]
    for key, value in (("clip_model", "convnext_base_w_320"), ("clip_resolution", 64),
                       ("mask_resolution", 16), ("trainable", "full"), ("logit_scale", 1.0),
                       ("dense_mode", "pixelclip"), ("num_prompts", 4), ("prompt_vocab", ""),
                       ("head_widths", "[8,8,8]"), ("live", "")):
        train += ["--set", f"train.{key}={value}"]
    result = CliRunner().invoke(cli, train)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "final.json").read_text())["open_clip_model"] == "convnext_base_w_320"
    sets = []
    for key, value in (("clip_model", "convnext_base_w_320"), ("resolution", 64),
                       ("dense_mode", "pixelclip"), ("synthetic", synth_root), ("options", "[]"),
                       ("metrics", tmp_path / "eval.json"), ("per_class", tmp_path / "pc.json"),
                       ("per_class_plots", tmp_path / "pc"), ("plots", tmp_path / "plots"),
                       ("max_images", 2)):
        sets += ["--set", f"evaluate.{key}={value}"]
    result = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(out / "final.pt"),
                                      "--baseline", "", *sets])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "eval.json").read_text())["synthetic"]
    assert scores["images"] == 2 and scores["checkpoint"]["miou"] is not None
    image = sorted((synth_root / "val/images").glob("*.png"))[0]
    result = CliRunner().invoke(cli, ["segment", str(image), "--classes", "sky,grass",
                                      "--checkpoint", str(out / "final.pt"),
                                      "--out", str(tmp_path / "seg"), *sets])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seg" / f"{image.stem}_label.png").is_file()
