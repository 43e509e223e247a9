"""Benchmark folders in the layouts the detectron2 / CAT-Seg preparation scripts produce.

Each benchmark root (``evaluate.roots.<key>``) is the data set's own folder, or the
``DETECTRON2_DATASETS`` folder that contains it::

    coco_stuff         coco-stuff/ images/val2017/*.jpg + annotations_detectron2/val2017/*.png
                       (also coco/ val2017 + annotations_detectron2 or stuffthingmaps_detectron2)
    ade20k_150         ADEChallengeData2016/ images/validation + annotations_detectron2/validation
    pascal_context_59  VOCdevkit/VOC2010/ JPEGImages + annotations_detectron2/pc59_val
    cityscapes         cityscapes/ leftImg8bit/val/<city>/*_leftImg8bit.png
                                   + gtFine/val/<city>/*_gtFine_labelTrainIds.png
    voc20              VOCdevkit/VOC2012/ JPEGImages + annotations_detectron2/val
    synthetic          classes.txt + val/images/*.png + val/labels/*.png (synthetic/synth.py)

Labels are uint8 PNGs of class ids with 255 = ignore. Pairs are found from the label files;
problems (missing pairs, unreadable files, out-of-range ids, size mismatch) raise
:class:`BenchmarkError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from config import EvaluateParams
from evaluate import class_names as cn
from evaluate.labels import read_label_png

IGNORE = 255


class BenchmarkError(ValueError):
    """A benchmark folder that does not match its layout; the message names the file."""


@dataclass(frozen=True)
class Layout:
    """Where a benchmark keeps its validation images and labels, relative to its root."""

    name: str
    classes: tuple[str, ...]
    containers: tuple[str, ...]  # the data set folder(s) inside a DETECTRON2_DATASETS root
    dirs: tuple[tuple[str, str], ...]  # candidate (image dir, label dir) pairs
    label_suffix: str = ".png"
    image_suffixes: tuple[str, ...] = (".jpg",)
    every_image_labelled: bool = True  # False where the image folder holds other splits too
    nested: bool = False  # labels sit in sub-folders (Cityscapes cities)
    miou: str = "detectron2"  # the official evaluator's mIoU convention (evaluate/metrics.py)


LAYOUTS: dict[str, Layout] = {
    "coco_stuff": Layout(
        "coco_stuff", cn.COCO_STUFF_171, ("coco-stuff", "coco"),
        (("images/val2017", "annotations_detectron2/val2017"),
         ("val2017", "annotations_detectron2/val2017"),
         ("val2017", "stuffthingmaps_detectron2/val2017"))),
    "ade20k_150": Layout(
        "ade20k_150", cn.ADE20K_150, ("ADEChallengeData2016",),
        (("images/validation", "annotations_detectron2/validation"),)),
    "pascal_context_59": Layout(
        "pascal_context_59", cn.PASCAL_CONTEXT_59, ("VOCdevkit/VOC2010",),
        (("JPEGImages", "annotations_detectron2/pc59_val"),), every_image_labelled=False),
    "cityscapes": Layout(
        "cityscapes", cn.CITYSCAPES_19, ("cityscapes",),
        (("leftImg8bit/val", "gtFine/val"),), label_suffix="_gtFine_labelTrainIds.png",
        image_suffixes=("_leftImg8bit.png",), nested=True, miou="cityscapes"),
    "voc20": Layout(
        "voc20", cn.VOC20, ("VOCdevkit/VOC2012",),
        (("JPEGImages", "annotations_detectron2/val"),), every_image_labelled=False),
}


@dataclass(frozen=True)
class Pair:
    """One validation image and its label PNG; ``key`` is the label path under its folder."""

    image: Path
    label: Path
    key: str


@dataclass(frozen=True)
class Benchmark:
    """A benchmark ready to evaluate: class names (label id = index) and image/label pairs."""

    name: str
    classes: tuple[str, ...]
    pairs: tuple[Pair, ...]
    root: str
    miou: str = "detectron2"


def synthetic_layout(root: str | Path) -> Layout:
    """The synthetic world's layout; class names come from its ``classes.txt``."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        raise BenchmarkError(f"synthetic: {path} not found (run the synth stage first)")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names:
        raise BenchmarkError(f"synthetic: {path} lists no class")
    return Layout("synthetic", names, (), (("val/images", "val/labels"),),
                  image_suffixes=(".png", ".jpg"))


def load_benchmark(layout: Layout, root: str | Path, max_images: int = 0) -> Benchmark:
    """Find every (image, label) pair of ``layout`` under ``root``; the first ``max_images``
    (0 = all) are kept, in sorted label order."""
    image_dir, label_dir = _resolve_dirs(layout, Path(root))
    pairs = _pairs(layout, image_dir, label_dir)
    if max_images > 0:
        pairs = pairs[:max_images]
    return Benchmark(layout.name, layout.classes, tuple(pairs), str(root), layout.miou)


def _resolve_dirs(layout: Layout, root: Path) -> tuple[Path, Path]:
    for base in (root, *(root / c for c in layout.containers)):
        for image_rel, label_rel in layout.dirs:
            if (base / image_rel).is_dir() and (base / label_rel).is_dir():
                return base / image_rel, base / label_rel
    expected = " or ".join(f"{i}/ + {lab}/" for i, lab in layout.dirs)
    raise BenchmarkError(f"{layout.name}: {root} does not have the expected folders {expected}")


def _pairs(layout: Layout, image_dir: Path, label_dir: Path) -> list[Pair]:
    pattern = f"*{layout.label_suffix}"
    labels = sorted(label_dir.rglob(pattern) if layout.nested else label_dir.glob(pattern))
    if not labels:
        hint = (" (create them with cityscapesscripts' createTrainIdLabelImgs.py)"
                if layout.name == "cityscapes" else "")
        raise BenchmarkError(f"{layout.name}: no {pattern} label files in {label_dir}{hint}")
    pairs = []
    for label in labels:
        rel = label.relative_to(label_dir)
        stem = rel.name[: -len(layout.label_suffix)]
        candidates = [image_dir / rel.parent / f"{stem}{s}" for s in layout.image_suffixes]
        image = next((c for c in candidates if c.is_file()), None)
        if image is None:
            raise BenchmarkError(f"{layout.name}: label {label} has no image {candidates[0]}")
        pairs.append(Pair(image, label, rel.as_posix()))
    if layout.every_image_labelled:
        _check_unlabelled(layout, image_dir, pairs)
    return pairs


def _check_unlabelled(layout: Layout, image_dir: Path, pairs: list[Pair]) -> None:
    paired = {p.image for p in pairs}
    for suffix in layout.image_suffixes:
        found = image_dir.rglob(f"*{suffix}") if layout.nested else image_dir.glob(f"*{suffix}")
        for image in sorted(found):
            if image not in paired:
                raise BenchmarkError(f"{layout.name}: image {image} has no label file")


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` with its EXIF orientation applied (as detectron2 reads images);
    ``BenchmarkError`` naming the file if it cannot be decoded."""
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise BenchmarkError(f"cannot read image {path}")
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def read_label(path: Path, num_classes: int, ignore_index: int = IGNORE) -> np.ndarray:
    """uint8 ``(H, W)`` class ids, checked to lie in ``[0, num_classes)`` or be ``ignore_index``."""
    try:
        label = read_label_png(path)
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None
    bad = (label >= num_classes) & (label != ignore_index)
    if bad.any():
        value = int(label[bad].max())
        raise BenchmarkError(
            f"label {path} has class id {value} outside [0, {num_classes}) and not "
            f"{ignore_index} (ignore)")
    return label.astype(np.uint8)


def load_pair(pair: Pair, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and label of one pair, checked to be the same size."""
    image, label = read_image(pair.image), read_label(pair.label, num_classes)
    if image.shape[:2] != label.shape:
        raise BenchmarkError(
            f"label {pair.label} is {label.shape[1]}x{label.shape[0]} but image {pair.image} "
            f"is {image.shape[1]}x{image.shape[0]} (after its EXIF orientation, if any)")
    return image, label


def discover(cfg: EvaluateParams) -> tuple[list[Benchmark], list[str]]:
    """The synthetic benchmark (when ``evaluate.synthetic`` is set), then every real benchmark
    whose root is set and exists. Returns the benchmarks and one line per skipped benchmark.
    """
    benchmarks, skipped = [], []
    if cfg.synthetic:
        benchmarks.append(load_benchmark(synthetic_layout(cfg.synthetic), cfg.synthetic,
                                         cfg.max_images))
    else:
        skipped.append("synthetic: skipped (evaluate.synthetic is not set)")
    for key, layout in LAYOUTS.items():
        root = getattr(cfg.roots, key)
        if not root:
            skipped.append(f"{key}: skipped (evaluate.roots.{key} is not set)")
        elif not Path(root).is_dir():
            skipped.append(f"{key}: skipped (evaluate.roots.{key}={root} does not exist)")
        else:
            benchmarks.append(load_benchmark(layout, root, cfg.max_images))
    if not benchmarks:
        raise BenchmarkError("evaluate: no benchmark to score: set evaluate.synthetic or one of "
                             f"evaluate.roots.{{{','.join(LAYOUTS)}}}")
    return benchmarks, skipped
