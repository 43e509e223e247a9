"""Loading, dense features, learnable prompts and the open_clip export."""

import pytest
import torch

from train.clip import _dense_block, dense_features, encode_texts, load_clip
from train.prompts import PromptLearner


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return load_clip("TinyCLIP-ViT-8", "")


def test_load_clip_missing_path_names_key_and_path(tmp_path):
    missing = str(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="train.clip_pretrained.*nope.pt"):
        load_clip("TinyCLIP-ViT-8", missing)


def test_dense_features_any_resolution(bundle):
    visual = bundle.model.visual
    assert dense_features(visual, torch.randn(2, 3, 64, 64)).shape == (2, 128, 8, 8)
    assert dense_features(visual, torch.randn(1, 3, 96, 40)).shape == (1, 128, 12, 5)
    with pytest.raises(ValueError, match="divisible"):
        dense_features(visual, torch.randn(1, 3, 60, 64))


def test_dense_block_is_the_block_without_token_mixing(bundle):
    """Attention restricted to the diagonal reduces to the value path: they must agree."""
    block = bundle.model.visual.transformer.resblocks[-1]
    x = torch.randn(2, 17, 128)
    diagonal = torch.full((17, 17), float("-inf")).fill_diagonal_(0.0)
    assert torch.allclose(block(x, attn_mask=diagonal), _dense_block(block, x), atol=1e-5)


def test_encode_texts_normalised(bundle):
    feats = encode_texts(bundle.model, bundle.tokenizer, ["a photo of a car.", "sky"])
    assert feats.shape == (2, 128)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_prompt_words_come_from_the_given_vocabulary(bundle, tmp_path):
    import json

    from train.prompts import read_vocab, vocab_record

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
