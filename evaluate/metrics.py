"""Confusion matrix → mIoU, pixel accuracy, per-class IoU. Pure numpy functions.

Rows of the confusion matrix are ground-truth classes, columns predicted classes. Pixels whose
ground truth is ``ignore_index`` are not counted. A class with neither ground truth nor
prediction (union 0) has IoU NaN and is left out of the mean; a class that is predicted but
absent from the ground truth has IoU 0 and counts (the mmsegmentation convention; detectron2
also drops classes without ground truth, which differs only on tiny or partial sets).
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


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of every class; NaN where the class has neither ground truth nor prediction."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of :func:`iou_per_class` over classes present in ground truth or prediction."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Correct pixels over counted pixels (NaN when nothing was counted)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def summarize(cm: np.ndarray, class_names: list[str] | tuple[str, ...]) -> dict:
    """``{"miou", "pixel_acc", "per_class": {name: iou or None}}`` in percent, JSON-ready."""
    iou = iou_per_class(cm)
    return {
        "miou": _pct(mean_iou(cm)),
        "pixel_acc": _pct(pixel_accuracy(cm)),
        "per_class": {name: _pct(v) for name, v in zip(class_names, iou, strict=True)},
    }


def _pct(value: float) -> float | None:
    return None if not np.isfinite(value) else round(100.0 * float(value), 4)
