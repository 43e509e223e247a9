"""Metrics: confusion matrix → IoU against an independent per-class computation."""

from __future__ import annotations

import numpy as np
import pytest

from evaluate.metrics import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy, summarize


def reference_miou(pred: np.ndarray, gt: np.ndarray, n: int, ignore: int = 255) -> float:
    """Set-based IoU per class, skipping classes with neither ground truth nor prediction."""
    valid = gt != ignore
    ious = []
    for c in range(n):
        p, g = (pred == c) & valid, (gt == c) & valid
        union = np.logical_or(p, g).sum()
        if union:
            ious.append(np.logical_and(p, g).sum() / union)
    return float(np.mean(ious))


@pytest.mark.parametrize("seed", range(5))
def test_miou_matches_independent_computation(seed):
    rng = np.random.default_rng(seed)
    n = 12
    gt = rng.integers(0, n - 3, (3, 40, 50)).astype(np.uint8)  # classes 9..11 never in gt
    gt[rng.random(gt.shape) < 0.2] = 255  # ignore pixels
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, n - 1, gt.shape))
    pred = pred.astype(np.uint8)  # class 11: neither in gt nor predicted
    cm = sum(confusion_matrix(p, g, n) for p, g in zip(pred, gt, strict=True))
    assert mean_iou(cm) == pytest.approx(reference_miou(pred, gt, n))
    iou = iou_per_class(cm)
    assert np.isnan(iou[11])  # absent: excluded from the mean
    assert iou[10] == 0.0  # predicted but never in gt: counts as 0
    valid = gt != 255
    assert pixel_accuracy(cm) == pytest.approx((pred[valid] == gt[valid]).mean())
    assert cm.sum() == valid.sum()


def test_handmade_iou_and_summary():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 0]], np.uint8)
    cm = confusion_matrix(pred, gt, 3)
    # class 0: tp 3, union 4; class 1: tp 3, union 4; class 2 absent
    np.testing.assert_allclose(iou_per_class(cm)[:2], [0.75, 0.75])
    out = summarize(cm, ["a", "b", "c"])
    assert out["miou"] == 75.0 and out["per_class"]["c"] is None
    assert out["pixel_acc"] == pytest.approx(100 * 6 / 7, abs=1e-3)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="ground-truth label 5"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.full((2, 2), 5, np.uint8), 3)
    with pytest.raises(ValueError, match="predicted label 7"):
        confusion_matrix(np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.uint8), 3)


def test_all_ignored_gives_nan():
    cm = confusion_matrix(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8), 3)
    assert np.isnan(mean_iou(cm)) and np.isnan(pixel_accuracy(cm))
    assert summarize(cm, ["a", "b", "c"])["miou"] is None


def test_uint8_fast_path_equals_generic_path():
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 20, (64, 48)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 20, gt.shape).astype(np.uint8)
    fast = confusion_matrix(pred, gt, 20)
    generic = confusion_matrix(pred.astype(np.int32), gt.astype(np.int32), 20)
    np.testing.assert_array_equal(fast, generic)
    assert fast.dtype == np.int64 and fast.shape == (20, 20)
