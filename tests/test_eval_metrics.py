"""Metrics: confusion matrix → IoU against an independent per-class computation."""

from __future__ import annotations

import numpy as np
import pytest

from evaluate.metrics import (
    class_counts,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    paired_bootstrap,
    pixel_accuracy,
    summarize,
)


def reference_miou(pred: np.ndarray, gt: np.ndarray, n: int, ignore: int = 255,
                   convention: str = "cityscapes") -> float:
    """Set-based IoU per class over the classes in the ground truth (detectron2) or in the
    ground truth or the prediction (cityscapes)."""
    valid = gt != ignore
    ious = []
    for c in range(n):
        p, g = (pred == c) & valid, (gt == c) & valid
        union = np.logical_or(p, g).sum()
        if (g.any() if convention == "detectron2" else union):
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
    for convention in ("detectron2", "cityscapes"):
        assert mean_iou(cm, convention) == pytest.approx(
            reference_miou(pred, gt, n, convention=convention))
    iou = iou_per_class(cm, "cityscapes")
    assert np.isnan(iou[11])  # absent: excluded from the mean
    assert iou[10] == 0.0  # predicted but never in gt: counts as 0
    assert np.isnan(iou_per_class(cm, "detectron2")[9:]).all()  # no ground truth: left out
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


def test_conventions_on_a_hand_computed_partial_set():
    """Two images of a 4-class set: class 2 is predicted but in neither ground truth, class 3
    is nowhere. detectron2 averages classes 0 and 1; cityscapes also counts class 2 as 0."""
    gt = np.array([[0, 0, 0, 1], [1, 1, 255, 255]], np.uint8)
    pred = np.array([[0, 0, 2, 1], [1, 2, 0, 3]], np.uint8)
    cm = confusion_matrix(pred, gt, 4)
    # class 0: tp 2, gt 3, pred 2 (ignored pixel not counted) -> 2/3
    # class 1: tp 2, gt 3, pred 2 -> 2/3; class 2: tp 0, gt 0, pred 2 -> 0
    assert mean_iou(cm, "detectron2") == pytest.approx(2 / 3)
    assert mean_iou(cm, "cityscapes") == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert summarize(cm, "abcd", "detectron2")["per_class"]["c"] is None
    assert summarize(cm, "abcd", "cityscapes")["per_class"]["c"] == 0.0
    with pytest.raises(ValueError, match="convention"):
        mean_iou(cm, "mmseg")


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


@pytest.mark.parametrize("convention", ["detectron2", "cityscapes"])
def test_paired_bootstrap_resamples_the_same_images_for_both_models(convention):
    """Each draw is the mIoU of A's and of B's confusion matrices summed over one resample of
    the images (restated here with whole matrices, seeded as documented); identical models
    differ by exactly 0; a model better on every image is higher in every draw."""
    rng = np.random.default_rng(3)
    gts = rng.integers(0, 5, (30, 8, 8))
    a = np.where(rng.random(gts.shape) < 0.7, gts, rng.integers(0, 5, gts.shape))
    b = np.where(rng.random(gts.shape) < 0.5, gts, rng.integers(0, 5, gts.shape))
    cm_a = np.stack([confusion_matrix(p, g, 5) for p, g in zip(a, gts, strict=True)])
    cm_b = np.stack([confusion_matrix(p, g, 5) for p, g in zip(b, gts, strict=True)])
    got = paired_bootstrap(np.stack([class_counts(c) for c in cm_a]),
                           np.stack([class_counts(c) for c in cm_b]), draws=200, seed=7,
                           convention=convention)
    draws = np.random.default_rng(7)
    want = []
    for _ in range(200):
        idx = draws.integers(0, 30, 30)
        want.append(100 * (mean_iou(cm_a[idx].sum(0), convention)
                           - mean_iou(cm_b[idx].sum(0), convention)))
    assert got["interval_95"] == pytest.approx(list(np.percentile(want, [2.5, 97.5])), abs=1e-4)
    assert got["p_higher"] == pytest.approx(np.mean(np.array(want) > 0))
    assert got["difference"] == pytest.approx(
        100 * (mean_iou(cm_a.sum(0), convention) - mean_iou(cm_b.sum(0), convention)), abs=1e-4)
    assert got["interval_95"][0] > 0 and got["p_higher"] == 1.0  # A is right 70% vs 50%
    same = paired_bootstrap(np.stack([class_counts(c) for c in cm_b]),
                            np.stack([class_counts(c) for c in cm_b]), draws=100)
    assert (same["difference"], same["interval_95"], same["p_higher"]) == (0.0, [0.0, 0.0], 0.0)
    with pytest.raises(ValueError, match="same"):
        paired_bootstrap(np.zeros((3, 3, 5)), np.zeros((4, 3, 5)))
