"""The ``synth`` stage: write the synthetic world like a real data set.

Layout under ``out``::

    classes.txt                       one class name per line, line i = class id i
    contact_sheet.png                 images | labels | masks, for a person to look at
    train/images/sa_000000.png + .json    image + SA-1B-layout JSON of unlabeled masks
    val/images/...                    same as train
    val/labels/sa_000000.png          uint8 class ids, 255 = ignore (evaluation only)
    web/images/web_000000.png         "web photos": crops of other scenes, whole to close-up
    web/captions.jsonl                {"file_name", "caption"} per web photo (tiny-CLIP pretraining)

The web split is the stand-in for CLIP's web data: separate scenes, photographed at every
scale, each with a caption naming what is visible. PixelCLIP's train split has no captions.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from config import SynthParams, to_dict
from shards import rle as rle_codec
from synthetic.world import NAMES, Scene, render_scene

SPLITS = {"train": 0, "val": 1, "web": 2}
WEB_MIN_FRACTION = 0.08  # a class is named in a web caption once it covers 8 % of the photo
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
    web: int


def run(cfg: SynthParams, overwrite: bool = False) -> SynthSummary:
    """Render the train, val and web splits into ``cfg.out``, deterministic in the seed.

    Every image has its own generator seeded by (seed, split, index), so the bytes do not
    depend on ``cfg.workers``, the number of processes rendering them. A folder that already
    holds files is refused, or with ``overwrite`` emptied first (no stale file survives).
    """
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not out.is_dir() or not overwrite:
            raise FileExistsError(f"synth.out: {out} is not an empty folder; pass --overwrite "
                                  "to replace it, or choose another")
        shutil.rmtree(out)
    for folder in ("train/images", "val/images", "val/labels", "web/images"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in NAMES))
    jobs = [(split, index) for split, count in (("train", cfg.train), ("val", cfg.val),
                                                ("web", cfg.web)) for index in range(count)]
    render = partial(_render, out=out, size=cfg.size, seed=cfg.seed)
    workers = cfg.workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            captions = list(pool.map(render, jobs, chunksize=32))
    else:
        captions = [render(job) for job in jobs]
    lines = "".join(json.dumps(c) + "\n" for c in captions if c is not None)
    (out / "web" / "captions.jsonl").write_text(lines)
    if cfg.val:
        sheet = [render_scene(_rng(cfg.seed, "val", i), cfg.size) for i in range(min(6, cfg.val))]
        _write_png(out / "contact_sheet.png", contact_sheet(sheet))
    (out / "params.json").write_text(json.dumps(to_dict(cfg), indent=2))
    return SynthSummary(str(out), cfg.train, cfg.val, cfg.web)


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one image: its scene, crop and caption depend on nothing else."""
    return np.random.default_rng([seed, SPLITS[split], index])


def _render(job: tuple[str, int], out: Path, size: int, seed: int) -> dict | None:
    """Write one image (and its masks, label or caption); → the caption row of a web photo."""
    split, index = job
    rng = _rng(seed, split, index)
    scene = render_scene(rng, size)
    if split == "web":
        photo, names = web_photo(rng, scene)
        name = f"web_{index:06d}.png"
        _write_png(out / "web" / "images" / name, photo)
        return {"file_name": name, "caption": caption(rng, names)}
    stem = f"sa_{index:06d}"
    _write_png(out / split / "images" / f"{stem}.png", scene.image)
    record = sa1b_json(scene, index, f"{stem}.png")
    (out / split / "images" / f"{stem}.json").write_text(json.dumps(record))
    if split == "val":
        _write_png(out / split / "labels" / f"{stem}.png", scene.label)
    return None


def web_photo(rng: np.random.Generator, scene: Scene) -> tuple[np.ndarray, list[str]]:
    """A square "web photo" of a scene and the class names it shows, largest first.

    30 % show the whole scene; the rest are crops of 30–80 % of its side, half of them
    centred on a random pixel of a random class (object-centric photos), half anywhere.
    """
    size = scene.label.shape[0]
    if rng.random() < 0.3:
        y0 = x0 = 0
        side = size
    else:
        side = int(rng.uniform(0.3, 0.8) * size)
        if rng.random() < 0.5:
            ys, xs = np.nonzero(scene.label == rng.choice(np.unique(scene.label)))
            pick = int(rng.integers(len(ys)))
            cy, cx = int(ys[pick]), int(xs[pick])
        else:
            cy, cx = (int(v) for v in rng.integers(0, size, 2))
        y0 = int(np.clip(cy - side // 2, 0, size - side))
        x0 = int(np.clip(cx - side // 2, 0, size - side))
    label = scene.label[y0 : y0 + side, x0 : x0 + side]
    fraction = np.bincount(label.ravel(), minlength=len(NAMES)) / label.size
    order = np.argsort(-fraction, kind="stable")
    names = [NAMES[c] for c in order if fraction[c] >= WEB_MIN_FRACTION]
    return scene.image[y0 : y0 + side, x0 : x0 + side], names


def caption(rng: np.random.Generator, names: list[str]) -> str:
    """A caption naming everything shown, in random order, in one of a few phrasings."""
    names = [names[i] for i in rng.permutation(len(names))]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
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
