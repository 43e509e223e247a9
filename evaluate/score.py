"""Score a folder of predicted label PNGs against a ground-truth folder, for any model.

Ground-truth files are found recursively (``*.png``, or a suffix such as
``_gtFine_labelTrainIds.png``); each prediction must sit at the same relative path in the
prediction folder. The numbers are the evaluate stage's (same confusion matrix and metrics).
With a second prediction folder the two are compared on the same images by a paired bootstrap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluate.labels import read_label_png
from evaluate.metrics import class_counts, confusion_matrix, paired_bootstrap, summarize


def score_folders(pred_dir: str | Path, gt_dir: str | Path, num_classes: int,
                  ignore_index: int = 255, suffix: str = ".png",
                  class_names: list[str] | None = None, convention: str = "detectron2",
                  against: str | Path | None = None, draws: int = 1000, seed: int = 0) -> dict:
    """``{"miou", "pixel_acc", "images", "per_class"}`` (percent) over every ground-truth file;
    with ``against`` (another prediction folder) also ``"against"``: its mIoU and
    :func:`~evaluate.metrics.paired_bootstrap` of ``pred_dir`` minus it over ``draws`` draws.

    Raises ``FileNotFoundError`` for a missing folder or prediction, ``ValueError`` naming the
    file for a size mismatch or an out-of-range label.
    """
    folders = {"--pred": Path(pred_dir), "--gt": Path(gt_dir)}
    if against is not None:
        folders["--against"] = Path(against)
    for key, folder in folders.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"{key}: folder not found: {folder}")
    gt_dir = folders.pop("--gt")
    truths = sorted(gt_dir.rglob(f"*{suffix}"))
    if not truths:
        raise FileNotFoundError(f"--gt: no *{suffix} files in {gt_dir}")
    names = class_names or [f"class_{i}" for i in range(num_classes)]
    counts = {key: np.zeros((len(truths), 3, num_classes), np.int64) for key in folders}
    cms = {key: np.zeros((num_classes, num_classes), np.int64) for key in folders}
    for i, gt_path in enumerate(truths):
        gt = read_label_png(gt_path)
        for key, folder in folders.items():
            pred_path = folder / gt_path.relative_to(gt_dir)
            if not pred_path.is_file():
                raise FileNotFoundError(f"no prediction {pred_path} for ground truth {gt_path}")
            try:
                cm = confusion_matrix(read_label_png(pred_path), gt, num_classes, ignore_index)
            except ValueError as exc:
                raise ValueError(f"{pred_path} vs {gt_path}: {exc}") from None
            cms[key] += cm
            counts[key][i] = class_counts(cm)
    summary = summarize(cms["--pred"], names, convention)
    result = {"miou": summary["miou"], "pixel_acc": summary["pixel_acc"], "images": len(truths),
              "miou_convention": convention, "per_class": summary["per_class"]}
    if against is not None:
        result["against"] = {"pred": str(against),
                             "miou": summarize(cms["--against"], names, convention)["miou"],
                             **paired_bootstrap(counts["--pred"], counts["--against"], draws,
                                                seed, convention)}
    return result
