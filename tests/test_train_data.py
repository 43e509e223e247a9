"""The training stream: infinite, split across ranks, jointly augmented, padded batches."""

import numpy as np
import torch

from config import TrainParams
from shards.reader import list_shards
from train.data import batches, make_stream, prepare


def _cfg(**kw) -> TrainParams:
    return TrainParams(clip_resolution=32, mask_resolution=16, shuffle_buffer=4, **kw)


def test_batches_are_padded_and_resized(shard_dir):
    data = batches(_cfg(), list_shards(shard_dir), micro_batch=3, seed=0)
    for _ in range(6):  # 18 samples from 12 images: the stream never runs dry
        batch = next(data)
    assert batch["teacher"].shape == (3, 3, 32, 32) and batch["teacher"].dtype == torch.uint8
    assert batch["student"].shape == (3, 3, 32, 32)
    masks, valid = batch["masks"], batch["valid"]
    assert masks.shape[:2] == valid.shape and masks.shape[-2:] == (16, 16)
    assert not masks[~valid].any()
    assert (masks[valid].flatten(1).sum(1) > 1).all()


def test_same_seed_same_stream(shard_dir):
    a = next(batches(_cfg(), list_shards(shard_dir), 2, seed=5))
    b = next(batches(_cfg(), list_shards(shard_dir), 2, seed=5))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cutout_is_removed_from_masks():
    image = np.full((64, 64, 3), 200, np.uint8)
    masks = np.ones((1, 64, 64), bool)
    cfg = _cfg(strong_aug=True, cutout=(0.5, 0.5), jitter=0.0, grayscale_p=0.0, blur_p=0.0,
               crop_scale=(1.0, 1.0))
    out = prepare({"image": image, "masks": masks}, np.random.default_rng(0), cfg)
    black = (out["student"] == 0).all(dim=0)  # (32, 32) cutout in the student view
    assert black.sum() == 16 * 16 and (out["teacher"] == 200).all()
    hole = torch.nn.functional.interpolate(black[None, None].float(), size=(16, 16))[0, 0] > 0
    assert not out["masks"][0][hole].any() and out["masks"][0][~hole].all()


def test_ranks_read_disjoint_shards(shard_dir, monkeypatch):
    keys = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = iter(make_stream(list_shards(shard_dir), 0, 0, num_workers=0, world_size=2))
        keys.append({next(stream)["key"] for _ in range(20)})
    assert keys[0] and keys[1] and not keys[0] & keys[1]
