"""Confusion matrix → mIoU, pixel accuracy, per-class IoU. Pure numpy functions.

Rows of the confusion matrix are ground-truth classes, columns predicted classes. Pixels whose
ground truth is ``ignore_index`` are not counted. Two conventions decide which classes the mean
runs over (``CONVENTIONS``): ``detectron2`` (its SemSegEvaluator: classes present in the ground
truth; the official evaluation of COCO-Stuff, ADE20K, Pascal Context and VOC) and ``cityscapes``
(cityscapesscripts, also mmsegmentation: classes in the ground truth or the prediction, so a
class predicted but absent scores 0). They differ only where a class is predicted but absent,
which is common on partial sets (``evaluate.max_images``).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts of (gt, pred) pairs over non-ignored pixels.

    Raises ``ValueError`` when shapes differ or a counted label is outside ``[0, num_classes)``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    if pred.dtype == gt.dtype == np.uint8 and num_classes <= 256:
        return _confusion_uint8(pred, gt, num_classes, ignore_index)
    valid = gt != ignore_index
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if g.size and (g.max() >= num_classes or g.min() < 0):
        raise ValueError(f"ground-truth label {int(g.max())} outside [0, {num_classes})")
    if p.size and (p.max() >= num_classes or p.min() < 0):
        raise ValueError(f"predicted label {int(p.max())} outside [0, {num_classes})")
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _confusion_uint8(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     ignore_index: int) -> np.ndarray:
    """Fast path for uint8 maps: one 256x256 bincount (no boolean indexing), then the
    ignore row dropped and anything outside ``[0, num_classes)`` reported."""
    index = (gt.astype(np.intp) << 8) | pred
    full = np.bincount(index.ravel(), minlength=65536).reshape(256, 256)
    if 0 <= ignore_index < 256:
        full[ignore_index] = 0
    cm = full[:num_classes, :num_classes]
    if full.sum() != cm.sum():
        rows = np.nonzero(full[num_classes:].any(1))[0]
        if rows.size:
            raise ValueError(f"ground-truth label {int(rows[-1]) + num_classes} outside "
                             f"[0, {num_classes})")
        cols = np.nonzero(full[:, num_classes:].any(0))[0]
        raise ValueError(f"predicted label {int(cols[-1]) + num_classes} outside "
                         f"[0, {num_classes})")
    return cm.astype(np.int64)


CONVENTIONS = ("detectron2", "cityscapes")


def iou_per_class(cm: np.ndarray, convention: str = "detectron2") -> np.ndarray:
    """IoU of every class; NaN for a class the convention leaves out of the mean (detectron2:
    no ground truth; cityscapes: neither ground truth nor prediction)."""
    return iou_from_counts(np.diag(cm), cm.sum(1), cm.sum(0), convention)


def class_counts(cm: np.ndarray) -> np.ndarray:
    """``(3, C)``: per class the true positives, ground-truth and predicted pixels of ``cm``,
    all that IoU needs (they add over images, unlike IoU)."""
    return np.stack([np.diag(cm), cm.sum(1), cm.sum(0)])


def iou_from_counts(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray,
                    convention: str = "detectron2") -> np.ndarray:
    """Per-class IoU from :func:`class_counts`' rows (any leading axes), NaN where the
    convention does not count the class."""
    if convention not in CONVENTIONS:
        raise ValueError(f"mIoU convention must be one of {', '.join(CONVENTIONS)}, "
                         f"got {convention!r}")
    tp = np.asarray(tp, np.float64)
    union = gt + pred - tp
    counted = gt > 0 if convention == "detectron2" else union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counted, tp / np.maximum(union, 1), np.nan)


def paired_bootstrap(counts_a: np.ndarray, counts_b: np.ndarray, draws: int = 1000,
                     seed: int = 0, convention: str = "detectron2") -> dict:
    """mIoU of A minus B (percent) with a 95% interval from resampling the images with
    replacement, the same images for both (``counts_*``: ``(images, 3, C)`` of
    :func:`class_counts`), and the share of draws in which A scores higher."""
    if counts_a.shape != counts_b.shape or counts_a.ndim != 3 or len(counts_a) == 0:
        raise ValueError(f"paired_bootstrap: counts of shape {counts_a.shape} and "
                         f"{counts_b.shape}, want the same (images, 3, classes)")
    rng = np.random.default_rng(seed)
    n = len(counts_a)
    flat = [c.reshape(n, -1).astype(np.float64) for c in (counts_a, counts_b)]
    diff = []
    for start in range(0, draws, 256):  # bounded memory: 256 resamples at a time
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n)
                            for _ in range(min(256, draws - start))]).astype(np.float64)
        miou = []
        for counts in flat:
            summed = (weights @ counts).reshape(len(weights), 3, -1)
            iou = iou_from_counts(summed[:, 0], summed[:, 1], summed[:, 2], convention)
            miou.append(100 * np.nanmean(iou, axis=1))
        diff.append(miou[0] - miou[1])
    diff = np.concatenate(diff)
    full = [100 * np.nanmean(iou_from_counts(*c.sum(0), convention)) for c in (counts_a, counts_b)]
    low, high = np.percentile(diff, [2.5, 97.5])
    return {"difference": round(float(full[0] - full[1]), 4),
            "interval_95": [round(float(low), 4), round(float(high), 4)],
            "p_higher": round(float((diff > 0).mean()), 4), "draws": draws, "images": n}


def mean_iou(cm: np.ndarray, convention: str = "detectron2") -> float:
    """Mean of :func:`iou_per_class` over the classes the convention counts."""
    iou = iou_per_class(cm, convention)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Correct pixels over counted pixels (NaN when nothing was counted)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def summarize(cm: np.ndarray, class_names: list[str] | tuple[str, ...],
              convention: str = "detectron2") -> dict:
    """``{"miou", "pixel_acc", "per_class": {name: iou or None}}`` in percent, JSON-ready."""
    iou = iou_per_class(cm, convention)
    return {
        "miou": _pct(mean_iou(cm, convention)),
        "pixel_acc": _pct(pixel_accuracy(cm)),
        "per_class": {name: _pct(v) for name, v in zip(class_names, iou, strict=True)},
    }


def _pct(value: float) -> float | None:
    return None if not np.isfinite(value) else round(100.0 * float(value), 4)
