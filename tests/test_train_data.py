"""The training stream: infinite, split across ranks, jointly augmented, compact masks."""

import numpy as np
import pytest
import torch

from config import TrainParams
from shards import rle
from shards.reader import list_shards, sample_pipeline
from train.augment import draw_geometry, resized_shape
from train.data import (
    NoGoodSamples,
    batches,
    collate,
    expand_masks,
    prepare,
    reference_masks,
)


def _cfg(**kw) -> TrainParams:
    return TrainParams(**{"clip_resolution": 32, "mask_resolution": 16, "shuffle_buffer": 4,
                          **kw})


def _official(**kw) -> TrainParams:
    return TrainParams(**{"crop": "official", "color_aug_ssd": True, "strong_aug": True,
                          "jitter": 0.5, "hue_jitter": 0.25, "blur_sigma": (0.1, 2.0),
                          "antialias": False, "clip_resolution": 320, "mask_resolution": 256,
                          **kw})


def _sample(rng, height, width, count) -> dict:
    masks = np.zeros((count, height, width), bool)
    for m in masks:
        y, x = rng.integers(0, height), rng.integers(0, width)
        m[y:y + rng.integers(1, height // 2), x:x + rng.integers(1, width // 2)] = True
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return {"image": image, "masks": masks, "rles": rle.encode(masks)}


def test_batches_are_padded_and_resized(shard_dir):
    data = batches(_cfg(), list_shards(shard_dir), micro_batch=3, seed=0)
    for _ in range(6):  # 18 samples from 12 images: the stream never runs dry
        batch = next(data)
    assert batch["teacher"].shape == (3, 3, 32, 32) and batch["teacher"].dtype == torch.uint8
    assert batch["student"].shape == (3, 3, 32, 32)
    masks, valid = expand_masks(batch, max_masks=512)
    assert masks.shape[:2] == valid.shape and masks.shape[-2:] == (16, 16)
    assert valid.sum(1).tolist() == [int(v) for v in valid.sum(1)] and valid.any(1).all()
    assert not masks[~valid].any()
    area = masks.flatten(2).sum(2)
    assert (area[valid] > 1).all()
    assert all((a[v][:-1] >= a[v][1:]).all() for a, v in zip(area, valid, strict=True))
    few, few_valid = expand_masks(batch, max_masks=2)
    assert few_valid.sum(1).max() == 2 and torch.equal(few, masks[:, :2] & few_valid[..., None,
                                                                                       None])


def test_same_seed_same_stream(shard_dir):
    a = next(batches(_cfg(), list_shards(shard_dir), 2, seed=5))
    b = next(batches(_cfg(), list_shards(shard_dir), 2, seed=5))
    c = next(batches(_cfg(), list_shards(shard_dir), 2, seed=6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["teacher"], c["teacher"])


@pytest.mark.parametrize("official", [False, True])
def test_masks_sampled_from_runs_equal_the_full_decode_path(official):
    """The loader never decodes a full-size mask, yet gives the masks of decoding all of them,
    resizing, cropping, flipping and resizing again (the plain path), bit for bit."""
    rng = np.random.default_rng(0)
    cfg = _official() if official else _cfg(strong_aug=True)
    sizes = [(750, 1125, 40), (889, 1333, 300), (300, 200, 5)] if official else [
        (128, 128, 12), (40, 90, 300), (64, 20, 3)]
    samples, expected = [], []
    for height, width, count in sizes:
        sample = _sample(rng, height, width, count)
        seed = int(rng.integers(1 << 30))
        samples.append(prepare(sample, np.random.default_rng(seed), cfg))
        geom = draw_geometry(height, width, np.random.default_rng(seed), cfg)
        expected.append(reference_masks(sample["masks"], geom, samples[-1]["keep"],
                                        cfg.max_masks))
    masks, valid = expand_masks(collate(samples), cfg.max_masks)
    for got, ok, want in zip(masks, valid, expected, strict=True):
        assert want.shape[0] > 0 and torch.equal(got[ok], want)


def test_cutout_is_removed_from_masks():
    image = np.full((32, 32, 3), 200, np.uint8)  # the view is the image: no resize blurs it
    masks = np.ones((1, 32, 32), bool)
    cfg = _cfg(strong_aug=True, cutout=(0.5, 0.5), jitter=0.0, grayscale_p=0.0, blur_p=0.0,
               crop_scale=(1.0, 1.0))
    out = prepare({"image": image, "rles": rle.encode(masks)}, np.random.default_rng(0), cfg)
    black = (out["student"] == 0).all(dim=0)  # (32, 32) cutout in the student view
    assert black.sum() == 16 * 16 and (out["teacher"] == 200).all()
    hole = torch.nn.functional.interpolate(black[None, None].float(), size=(16, 16))[0, 0] > 0
    got, _ = expand_masks(collate([out]), 512)
    assert not got[0, 0][hole].any() and got[0, 0][~hole].all()


def test_official_geometry_is_a_640_crop_of_the_1024_short_side_image():
    """detectron2's ResizeShortestEdge(1024, max 1333) then a 640² crop, flipped half the time:
    an SA-1B image (1500 x 2250) is seen at 889 x 1333, whatever size the shard stores."""
    cfg = _official()
    assert resized_shape(1500, 2250, 1024, 1333) == (889, 1333)
    assert resized_shape(683, 1024, 1024, 1333) == (889, 1333)
    assert resized_shape(1024, 1024, 1024, 1333) == (1024, 1024)
    rng = np.random.default_rng(0)
    geoms = [draw_geometry(750, 1125, rng, cfg) for _ in range(2000)]
    assert {g.size for g in geoms} == {(889, 1333)}
    boxes = np.array([g.box for g in geoms])
    assert (boxes[:, 2:] == 640).all()
    assert boxes[:, 0].min() == 0 and boxes[:, 0].max() == 889 - 640
    assert boxes[:, 1].min() < 10 and boxes[:, 1].max() > 1333 - 640 - 10
    assert abs(boxes[:, 1].mean() - (1333 - 640) / 2) < 15
    assert 0.45 < np.mean([g.flip for g in geoms]) < 0.55
    # a mask pixel comes from the stored pixel under its centre: a one-column stripe at x
    # of the stored image lands at x * 1333 / 1125 (+ the pixel's extent) in the resized one
    geom = geoms[0]
    rows, cols = geom.mask_indices(256)
    assert rows.min() >= 0 and rows.max() < 750 and cols.max() < 1125
    y0, x0, _, _ = geom.box
    expect = ((x0 + np.arange(640) + 0.5) * 1125 / 1333).astype(int)
    view_cols = expect[::-1] if geom.flip else expect
    assert np.array_equal(cols, view_cols[np.floor(np.arange(256) * 2.5).astype(int)])


def test_colour_goes_to_the_shared_view_and_the_strong_view_on_top():
    rng = np.random.default_rng(1)
    sample = _sample(rng, 700, 900, 4)
    out = prepare(sample, np.random.default_rng(2), _official(cutout=(0.0, 0.0)))
    assert out["teacher"].shape == out["student"].shape == (3, 320, 320)
    plain = prepare(sample, np.random.default_rng(2), _official(
        cutout=(0.0, 0.0), color_aug_ssd=False, strong_aug=False))
    assert not torch.equal(out["teacher"], out["student"])
    assert not torch.equal(plain["teacher"], out["teacher"])  # ColorAugSSD on the shared view
    assert torch.equal(plain["teacher"], plain["student"])


def test_ranks_read_disjoint_shards(shard_dir, monkeypatch):
    keys = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = iter(sample_pipeline(list_shards(shard_dir), forever=True, readers=2))
        keys.append({next(stream)["key"] for _ in range(20)})
    assert keys[0] and keys[1] and not keys[0] & keys[1]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_folder_where_nothing_decodes_stops_with_one_line(tmp_path, workers):
    import webdataset as wds

    for i in range(3):
        with wds.TarWriter(str(tmp_path / f"train-{i:06d}.tar")) as sink:
            for j in range(4):
                sink.write({"__key__": f"s{i}{j}", "jpg": b"not a jpeg", "masks.json": b"{}"})
    data = batches(_cfg(num_workers=workers), list_shards(tmp_path), 2, seed=0)
    with pytest.raises(NoGoodSamples) as info:
        next(data)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "decodes" in message


@pytest.mark.parametrize("op", range(4))
def test_jitter_operations_are_torchvisions_on_pil_images(op):
    """The student's ColorJitter, one operation at a time, against torchvision's own on a
    PIL image (the official mapper's): brightness, contrast and saturation to the grey level;
    hue in OpenCV's 180 steps, within a few grey levels of PIL's HSV."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    from train.augment import _jitter

    img = np.random.default_rng(op).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    factor = (1.37, 0.61, 1.42, -0.11)[op]
    want = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation,
            TF.adjust_hue)[op](Image.fromarray(img), factor)

    class Draws:
        def permutation(self, n):
            return [op]

        def uniform(self, low, high):
            return factor

    got = _jitter(img, Draws(), 0.5, 0.25).astype(int)
    diff = np.abs(got - np.asarray(want).astype(int))
    if op < 3:
        assert diff.max() == 0
    else:
        assert np.median(diff) == 0 and diff.mean() < 2


def test_fewer_shards_than_readers_resample_and_two_workers_share_the_shards(shard_dir):
    """3 shards for 4 readers: each resamples forever with its own seed. With 2 dataloader
    workers the stream is the same for the same seed, and both workers' shards appear."""
    urls = list_shards(shard_dir)
    stream = iter(sample_pipeline(urls, forever=True, readers=len(urls) + 1, seed=3))
    keys = [next(stream)["key"] for _ in range(30)]
    assert len(set(keys)) == 12  # every image of every shard, and more passes than one
    cfg = _cfg(num_workers=2)
    one = next(batches(cfg, urls, 2, seed=1))
    two = next(batches(cfg, urls, 2, seed=1))
    assert all(torch.equal(one[k], two[k]) for k in one)
    data = batches(_cfg(num_workers=2, shuffle_buffer=0), urls, 1, seed=1)
    seen = {bytes(next(data)["teacher"].numpy()) for _ in range(24)}
    assert len(seen) >= 10  # samples from the shards of both workers, not one worker's twice


def test_grey_is_pils_luma_bit_for_bit():
    """The greyscale behind contrast, RandomGrayscale and saturation equals PIL's
    ``convert("L")`` on a million random colours and on every corner of the RGB cube."""
    from PIL import Image

    from train.augment import _grey

    rng = np.random.default_rng(0)
    corners = np.array(np.meshgrid([0, 1, 254, 255], [0, 1, 254, 255], [0, 1, 254, 255]))
    img = np.concatenate([rng.integers(0, 256, (1000, 1000, 3)),
                          corners.reshape(3, 1, -1).transpose(1, 2, 0).repeat(1000, 0)],
                         axis=1).astype(np.uint8)
    assert np.array_equal(_grey(img), np.asarray(Image.fromarray(img).convert("L")))
