import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from shards import rle


def _reference(masks: np.ndarray) -> list[dict]:
    return mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 64), (31, 90)])
def test_random_masks_round_trip_and_match_pycocotools(shape):
    rng = np.random.default_rng(sum(shape))
    masks = rng.random((5, *shape)) < rng.random((5, 1, 1))
    encoded = rle.encode(masks)
    assert all(isinstance(r["counts"], str) for r in encoded)
    assert [r["counts"].encode() for r in encoded] == [r["counts"] for r in _reference(masks)]
    np.testing.assert_array_equal(rle.decode(encoded, *shape), masks)
    assert rle.area(encoded) == [int(m.sum()) for m in masks]


def test_edge_cases_empty_full_single_pixel_non_square():
    h, w = 5, 9
    empty = np.zeros((h, w), bool)
    full = np.ones((h, w), bool)
    pixel = empty.copy()
    pixel[4, 8] = True
    masks = np.stack([empty, full, pixel])
    encoded = rle.encode(masks)
    np.testing.assert_array_equal(rle.decode(encoded, h, w), masks)
    assert rle.area(encoded) == [0, h * w, 1]
    assert rle.bbox(encoded)[2] == [8.0, 4.0, 1.0, 1.0]
    assert rle.bbox(encoded)[1] == [0.0, 0.0, float(w), float(h)]


def test_no_masks_and_wrong_size():
    assert rle.encode(np.zeros((0, 4, 4), bool)) == []
    assert rle.decode([], 4, 6).shape == (0, 4, 6)
    encoded = rle.encode(np.ones((1, 4, 4), bool))
    with pytest.raises(ValueError, match="size"):
        rle.decode(encoded, 4, 5)


@pytest.mark.parametrize(("src", "dst"), [((150, 225), (68, 102)), ((31, 90), (31, 45)),
                                          ((20, 10), (45, 23))])
def test_resize_equals_decode_resize_encode(src, dst):
    rng = np.random.default_rng(src[0])
    masks = rng.random((4, *src)) < rng.random((4, 1, 1))
    masks[0] = False
    encoded = rle.encode(masks)
    expected = np.stack([cv2.resize(m.astype(np.uint8), dst[::-1],
                                    interpolation=cv2.INTER_NEAREST) > 0 for m in masks])
    resized = rle.resize(encoded, src, dst)
    assert [r["size"] for r in resized] == [list(dst)] * 4
    np.testing.assert_array_equal(rle.decode(resized, *dst), expected)
    assert rle.resize([], src, dst) == []
    with pytest.raises(ValueError, match="size"):
        rle.resize(encoded, dst, src)


def test_iou_matches_the_decoded_masks():
    rng = np.random.default_rng(3)
    a, b = rng.random((3, 17, 29)) < 0.4, rng.random((4, 17, 29)) < 0.6
    inter = (a[:, None] & b[None]).sum(axis=(2, 3))
    union = (a[:, None] | b[None]).sum(axis=(2, 3))
    np.testing.assert_allclose(rle.iou(rle.encode(a), rle.encode(b)), inter / union)
    assert rle.iou([], rle.encode(b)).shape == (0, 4)


def test_run_lengths_match_the_decoded_masks():
    rng = np.random.default_rng(1)
    masks = rng.random((6, 37, 53)) < np.array([0, 1, 0.5, 0.02, 0.98, 0.3])[:, None, None]
    for mask, encoded in zip(masks, rle.encode(masks), strict=True):
        flat = mask.flatten(order="F").astype(np.int8)
        edges = np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]
        expected = np.r_[[0] if flat[0] else [], np.diff(edges)]
        np.testing.assert_array_equal(rle.run_lengths(encoded["counts"]), expected)


def test_check_reads_all_masks_at_once_and_names_the_bad_one():
    rng = np.random.default_rng(2)
    masks = rng.random((5, 19, 23)) < np.array([0.5, 0, 0.1, 1, 0.9])[:, None, None]
    encoded = rle.encode(masks)
    rle.check(encoded, 19, 23)  # valid: silent
    for i, counts in [(0, "5"), (2, "0`"), (4, encoded[3]["counts"] + "1")]:
        bad = [dict(r) for r in encoded]
        bad[i]["counts"] = counts
        with pytest.raises(ValueError, match=f"^RLE {i}: "):
            rle.check(bad, 19, 23)


@pytest.mark.parametrize(("counts", "message"), [("5", "cover 5 pixels, expected 16"),
                                                 ("100000", "cover 1 pixels"),
                                                 ("ro", "not a compressed COCO RLE"),
                                                 ("0`", "not a compressed COCO RLE")])
def test_corrupt_counts_are_refused_before_pycocotools_decodes_them(counts, message):
    bad = [{"size": [4, 4], "counts": counts}]
    with pytest.raises(ValueError, match=message):
        rle.decode(bad, 4, 4)
    with pytest.raises(ValueError, match=message):
        rle.resize(bad, (4, 4), (2, 2))


def _values(toggles: np.ndarray, size: int) -> np.ndarray:
    flips = np.zeros(size, np.int64)
    np.add.at(flips, toggles, 1)
    return np.cumsum(flips) % 2 == 1


def test_grid_toggles_sample_the_decoded_masks_at_any_grid():
    """Repeated rows, skipped columns, empty and full masks, one-row and one-column images:
    the parity of each mask's toggles is the decoded mask at the grid, column-major."""
    rng = np.random.default_rng(4)
    for height, width in [(1, 1), (1, 17), (23, 1), (37, 53), (64, 64)]:
        fill = np.array([0, 1, 0.5, 0.02, 0.98])[:, None, None]
        masks = rng.random((5, height, width)) < fill
        rows = np.sort(rng.integers(0, height, 31))
        cols = np.unique(rng.integers(0, width, 19))
        toggles, lengths = rle.grid_toggles(rle.encode(masks), height, width, rows, cols)
        want = masks[:, rows][:, :, cols].transpose(0, 2, 1).reshape(5, -1)
        for mask, own in zip(want, np.split(toggles, np.cumsum(lengths)[:-1]), strict=True):
            assert (np.diff(own) > 0).all()
            np.testing.assert_array_equal(_values(own, mask.size), mask)


@pytest.mark.parametrize("counts", ["", "5", "0`"])
def test_grid_toggles_name_the_bad_rle(counts):
    good = rle.encode(np.ones((2, 4, 4), bool))
    for i in range(3):
        bad = [*good[:i], {"size": [4, 4], "counts": counts}, *good[i:]]
        with pytest.raises(ValueError, match=f"^RLE {i}: "):
            rle.grid_toggles(bad, 4, 4, np.arange(4), np.arange(4))
