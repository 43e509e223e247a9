"""Benchmark loaders on tiny fake folders in their real (detectron2 / CAT-Seg) layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from config import BenchmarkRoots, EvaluateParams
from evaluate.benchmarks import (
    LAYOUTS,
    BenchmarkError,
    discover,
    load_benchmark,
    load_pair,
    synthetic_layout,
)
from evaluate.labels import write_label

# benchmark key → (dataset folder, image rel path, label rel path) of one sample
SAMPLES = {
    "coco_stuff": ("coco-stuff", "images/val2017/{s}.jpg",
                   "annotations_detectron2/val2017/{s}.png"),
    "ade20k_150": ("ADEChallengeData2016", "images/validation/{s}.jpg",
                   "annotations_detectron2/validation/{s}.png"),
    "pascal_context_59": ("VOCdevkit/VOC2010", "JPEGImages/{s}.jpg",
                          "annotations_detectron2/pc59_val/{s}.png"),
    "cityscapes": ("cityscapes", "leftImg8bit/val/frankfurt/{s}_leftImg8bit.png",
                   "gtFine/val/frankfurt/{s}_gtFine_labelTrainIds.png"),
    "voc20": ("VOCdevkit/VOC2012", "JPEGImages/{s}.jpg", "annotations_detectron2/val/{s}.png"),
}
STEMS = ("a_000001", "a_000002")


def write_image(path: Path, height: int = 24, width: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    assert cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def make_fake(root: Path, key: str, num_classes: int, stems=STEMS) -> Path:
    folder, image_rel, label_rel = SAMPLES[key]
    base = root / folder
    for i, stem in enumerate(stems):
        write_image(base / image_rel.format(s=stem))
        label = np.full((24, 32), i % num_classes, np.uint8)
        label[0, :5] = 255
        write_label(base / label_rel.format(s=stem), label)
    return base


@pytest.mark.parametrize("key", list(SAMPLES))
def test_each_benchmark_loads_its_layout(tmp_path, key):
    layout = LAYOUTS[key]
    base = make_fake(tmp_path, key, len(layout.classes))
    if key in ("pascal_context_59", "voc20"):  # JPEGImages also holds unlabelled train images
        write_image(base / "JPEGImages" / "train_only.jpg")
    if key == "cityscapes":  # other gtFine files are not labels
        write_label(base / "gtFine/val/frankfurt/a_000001_gtFine_labelIds.png",
                    np.zeros((24, 32), np.uint8))
    for root in (base, tmp_path):  # the data set folder, or the DETECTRON2_DATASETS folder
        bench = load_benchmark(layout, root)
        assert bench.name == key and len(bench.pairs) == 2
        assert len(bench.classes) == {"coco_stuff": 171, "ade20k_150": 150,
                                      "pascal_context_59": 59, "cityscapes": 19,
                                      "voc20": 20}[key]
        image, label = load_pair(bench.pairs[1], len(bench.classes))
        assert image.shape == (24, 32, 3) and label.shape == (24, 32)
        assert set(np.unique(label)) == {1, 255}
    assert load_benchmark(layout, base, max_images=1).pairs[0].key.endswith(".png")


def test_coco_stuff_detectron2_variant(tmp_path):
    base = tmp_path / "coco"
    write_image(base / "val2017" / "000000000139.jpg")
    write_label(base / "stuffthingmaps_detectron2/val2017/000000000139.png",
                np.full((24, 32), 170, np.uint8))
    bench = load_benchmark(LAYOUTS["coco_stuff"], tmp_path)
    assert bench.pairs[0].image == base / "val2017" / "000000000139.jpg"


def test_synthetic_layout(synth_root):
    layout = synthetic_layout(synth_root)
    bench = load_benchmark(layout, synth_root)
    assert len(bench.pairs) == 4 and bench.classes[0] == "sky"
    image, label = load_pair(bench.pairs[0], len(bench.classes))
    assert image.shape[:2] == label.shape


def test_label_out_of_range_names_the_file(tmp_path):
    base = make_fake(tmp_path, "voc20", 20)
    bad = base / "annotations_detectron2/val/a_000002.png"
    write_label(bad, np.full((24, 32), 20, np.uint8))
    bench = load_benchmark(LAYOUTS["voc20"], base)
    with pytest.raises(BenchmarkError, match=f"label {bad} has class id 20 outside"):
        load_pair(bench.pairs[1], 20)


def test_size_mismatch_names_both_files(tmp_path):
    base = make_fake(tmp_path, "ade20k_150", 150)
    write_image(base / "images/validation/a_000001.jpg", 20, 32)
    bench = load_benchmark(LAYOUTS["ade20k_150"], base)
    with pytest.raises(BenchmarkError, match="label .*a_000001.png is 32x24 but image .*is 32x20"):
        load_pair(bench.pairs[0], 150)


def test_missing_image_and_missing_label(tmp_path):
    base = make_fake(tmp_path, "ade20k_150", 150)
    (base / "images/validation/a_000002.jpg").unlink()
    with pytest.raises(BenchmarkError, match="label .*a_000002.png has no image"):
        load_benchmark(LAYOUTS["ade20k_150"], base)
    write_image(base / "images/validation/a_000002.jpg")
    write_image(base / "images/validation/extra.jpg")
    with pytest.raises(BenchmarkError, match="image .*extra.jpg has no label file"):
        load_benchmark(LAYOUTS["ade20k_150"], base)


def test_wrong_layout_and_empty_label_folder(tmp_path):
    (tmp_path / "somewhere").mkdir()
    with pytest.raises(BenchmarkError, match="does not have the expected folders"):
        load_benchmark(LAYOUTS["ade20k_150"], tmp_path / "somewhere")
    (tmp_path / "cityscapes/leftImg8bit/val").mkdir(parents=True)
    (tmp_path / "cityscapes/gtFine/val").mkdir(parents=True)
    with pytest.raises(BenchmarkError, match="createTrainIdLabelImgs"):
        load_benchmark(LAYOUTS["cityscapes"], tmp_path / "cityscapes")


def test_unreadable_and_multichannel_labels(tmp_path):
    base = make_fake(tmp_path, "voc20", 20)
    label = base / "annotations_detectron2/val/a_000001.png"
    cv2.imwrite(str(label), np.zeros((24, 32, 3), np.uint8))
    bench = load_benchmark(LAYOUTS["voc20"], base)
    with pytest.raises(BenchmarkError, match=f"label {label} is not a single-channel PNG"):
        load_pair(bench.pairs[0], 20)
    label.write_bytes(b"not a png")
    with pytest.raises(BenchmarkError, match=f"cannot read label {label}"):
        load_pair(bench.pairs[0], 20)


def test_discover_skips_absent_roots(tmp_path, synth_root):
    ade = make_fake(tmp_path, "ade20k_150", 150)
    roots = BenchmarkRoots(ade20k_150=str(ade), voc20=str(tmp_path / "nope"))
    benches, skipped = discover(EvaluateParams(synthetic=str(synth_root), roots=roots))
    assert [b.name for b in benches] == ["synthetic", "ade20k_150"]
    assert f"voc20: skipped (evaluate.roots.voc20={tmp_path / 'nope'} does not exist)" in skipped
    assert "coco_stuff: skipped (evaluate.roots.coco_stuff is not set)" in skipped
    assert len(skipped) == 4
    with pytest.raises(BenchmarkError, match="classes.txt not found"):
        discover(EvaluateParams(synthetic=str(tmp_path / "none")))
