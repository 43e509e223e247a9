"""Score a folder of predicted label PNGs against a ground-truth folder, for any model.

Ground-truth files are found recursively (``*.png``, or a suffix such as
``_gtFine_labelTrainIds.png``); each prediction must sit at the same relative path in the
prediction folder. The numbers are the evaluate stage's (same confusion matrix and metrics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluate.labels import read_label_png
from evaluate.metrics import confusion_matrix, summarize


def score_folders(pred_dir: str | Path, gt_dir: str | Path, num_classes: int,
                  ignore_index: int = 255, suffix: str = ".png",
                  class_names: list[str] | None = None, convention: str = "detectron2") -> dict:
    """``{"miou", "pixel_acc", "images", "per_class"}`` (percent) over every ground-truth file.

    Raises ``FileNotFoundError`` for a missing folder or prediction, ``ValueError`` naming the
    file for a size mismatch or an out-of-range label.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for key, folder in (("--pred", pred_dir), ("--gt", gt_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{key}: folder not found: {folder}")
    truths = sorted(gt_dir.rglob(f"*{suffix}"))
    if not truths:
        raise FileNotFoundError(f"--gt: no *{suffix} files in {gt_dir}")
    names = class_names or [f"class_{i}" for i in range(num_classes)]
    cm = np.zeros((num_classes, num_classes), np.int64)
    for gt_path in truths:
        pred_path = pred_dir / gt_path.relative_to(gt_dir)
        if not pred_path.is_file():
            raise FileNotFoundError(f"no prediction {pred_path} for ground truth {gt_path}")
        pred, gt = read_label_png(pred_path), read_label_png(gt_path)
        try:
            cm += confusion_matrix(pred, gt, num_classes, ignore_index)
        except ValueError as exc:
            raise ValueError(f"{pred_path} vs {gt_path}: {exc}") from None
    summary = summarize(cm, names, convention)
    return {"miou": summary["miou"], "pixel_acc": summary["pixel_acc"], "images": len(truths),
            "miou_convention": convention, "per_class": summary["per_class"]}
