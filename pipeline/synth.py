"""The ``synth`` stage: write the synthetic world like a real data set.

Layout under ``out``::

    classes.txt                       one class name per line, line i = class id i
    contact_sheet.png                 images | labels | masks, for a person to look at
    train/images/sa_000000.png + .json    image + SA-1B-layout JSON of unlabeled masks
    train/captions.jsonl              {"file_name", "caption"} per image (tiny-CLIP pretraining)
    val/images/...                    same as train
    val/labels/sa_000000.png          uint8 class ids, 255 = ignore (evaluation only)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from config import SynthParams, to_dict
from pipeline.synth_world import NAMES, Scene, render_scene
from shards import rle as rle_codec

SPLITS = {"train": 0, "val": 1}
CAPTION_TEMPLATES = (
    "a photo of {}.",
    "a picture showing {}.",
    "{} in a simple scene.",
    "an image with {}.",
)


@dataclass(frozen=True)
class SynthSummary:
    out: str
    train: int
    val: int


def run(cfg: SynthParams) -> SynthSummary:
    """Render ``cfg.train`` + ``cfg.val`` scenes into ``cfg.out``, deterministic in the seed."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in NAMES))
    sheet: list[Scene] = []
    for split, count in (("train", cfg.train), ("val", cfg.val)):
        images = out / split / "images"
        images.mkdir(parents=True, exist_ok=True)
        if split == "val":
            (out / split / "labels").mkdir(exist_ok=True)
        captions = []
        for index in range(count):
            rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
            scene = render_scene(rng, cfg.size)
            stem = f"sa_{index:06d}"
            _write_png(images / f"{stem}.png", scene.image)
            (images / f"{stem}.json").write_text(json.dumps(sa1b_json(scene, index, f"{stem}.png")))
            if split == "val":
                _write_png(out / split / "labels" / f"{stem}.png", scene.label)
                if len(sheet) < 6:
                    sheet.append(scene)
            captions.append({"file_name": f"{stem}.png", "caption": caption(rng, scene.names)})
        if split == "train":
            lines = "".join(json.dumps(c) + "\n" for c in captions)
            (out / split / "captions.jsonl").write_text(lines)
    if sheet:
        _write_png(out / "contact_sheet.png", contact_sheet(sheet))
    (out / "params.json").write_text(json.dumps(to_dict(cfg), indent=2))
    return SynthSummary(str(out), cfg.train, cfg.val)


def caption(rng: np.random.Generator, names: list[str]) -> str:
    """A web-like caption: most (not always all) of what is there, in random order."""
    kept = [n for n in names if rng.random() < 0.85] or [names[int(rng.integers(len(names)))]]
    kept = [kept[i] for i in rng.permutation(len(kept))]
    listed = kept[0] if len(kept) == 1 else ", ".join(kept[:-1]) + " and " + kept[-1]
    return str(rng.choice(CAPTION_TEMPLATES)).format(listed)


def sa1b_json(scene: Scene, image_id: int, file_name: str) -> dict:
    """The SA-1B annotation layout for a scene's unlabeled region masks."""
    height, width = scene.label.shape
    rles = rle_codec.encode(scene.masks)
    annotations = []
    for i, (mask, rle, area, box) in enumerate(
        zip(scene.masks, rles, rle_codec.area(rles), rle_codec.bbox(rles))
    ):
        ys, xs = np.nonzero(mask)
        mid = len(ys) // 2
        annotations.append({
            "id": image_id * 1000 + i,
            "segmentation": rle,
            "area": area,
            "bbox": box,
            "predicted_iou": 1.0,
            "stability_score": 1.0,
            "point_coords": [[float(xs[mid]), float(ys[mid])]],
            "crop_box": [0.0, 0.0, float(width), float(height)],
        })
    image = {"image_id": image_id, "width": width, "height": height, "file_name": file_name}
    return {"image": image, "annotations": annotations}


def palette(n: int, seed: int = 3) -> np.ndarray:
    """Distinct-ish RGB colours for ``n`` ids (deterministic)."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 256, (max(n, 1), 3), dtype=np.uint8)


def contact_sheet(scenes: list[Scene]) -> np.ndarray:
    """Rows of image | semantic label | unlabeled masks, with column titles."""
    colours = palette(len(NAMES))
    rows = []
    for scene in scenes:
        label_rgb = colours[scene.label]
        mask_rgb = np.zeros_like(scene.image)
        for mask, colour in zip(scene.masks, palette(len(scene.masks), seed=7)):
            mask_rgb[mask] = colour
        rows.append(np.concatenate([scene.image, label_rgb, mask_rgb], axis=1))
    sheet = np.concatenate(rows, axis=0)
    header = np.full((18, sheet.shape[1], 3), 255, np.uint8)
    width = scenes[0].image.shape[1]
    for i, title in enumerate(("image", "label (eval only)", "unlabeled masks")):
        cv2.putText(header, title, (i * width + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return np.concatenate([header, sheet], axis=0)


def _write_png(path: Path, array: np.ndarray) -> None:
    data = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", data)
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    path.write_bytes(buf.tobytes())
