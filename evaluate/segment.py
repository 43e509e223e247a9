"""Segment arbitrary images with arbitrary class names: overlay PNG (with legend) + label PNG.

Works with any open_clip ViT checkpoint (a local file or an open_clip ``pretrained`` tag), the
same inference path as the evaluate stage.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from config import EvaluateParams, MasksParams, resolve_device
from evaluate import report
from evaluate.benchmarks import read_image
from evaluate.inference import check_resolution, classifier, options_for, predict
from evaluate.labels import write_label
from models.clip import load_clip
from pipeline.generators import Item, get_generator
from pipeline.images import BadInput, load_image
from shards import rle


def parse_classes(text: str) -> list[str]:
    """``"sky, grass,dog"`` → ``["sky", "grass", "dog"]``; at least one name is required."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("--classes: give at least one class name, e.g. 'sky,grass,dog'")
    if len(set(names)) != len(names):
        raise ValueError(f"--classes: duplicate names in {text!r}")
    return names


def output_names(images: list[Path]) -> list[str]:
    """A distinct output name per image: its stem, or where two images share a stem, its path
    relative to the images' common folder with ``/`` as ``__`` (``a/x.png`` → ``a__x``)."""
    stems = [p.stem for p in images]
    if len(set(stems)) == len(stems):
        return stems
    full = [p.resolve() for p in images]
    if len(set(full)) != len(full):
        raise ValueError("segment: the same image is given twice")
    common = Path(os.path.commonpath([str(p.parent) for p in full]))
    return [p.relative_to(common).with_suffix("").as_posix().replace("/", "__") for p in full]


def segment(images: list[str | Path], classes: list[str], out: str | Path,
            cfg: EvaluateParams, masks: MasksParams | None = None) -> list[Path]:
    """Write ``<name>_overlay.png`` and ``<name>_label.png`` per image into ``out`` (names from
    :func:`output_names`) with ``cfg.checkpoint`` under ``cfg``'s inference settings; with
    ``cfg.masks`` each image's masks come from that generator (``masks``' settings)."""
    for image in images:
        if not Path(image).is_file():
            raise FileNotFoundError(f"image not found: {image}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out: {out} is a file, not a folder")
    names = output_names([Path(p) for p in images])
    device = resolve_device(cfg.device, "--device")
    bundle = load_clip(cfg.clip_model, cfg.checkpoint, device, key="--checkpoint")
    options = options_for(cfg)
    check_resolution(bundle, options)
    text = classifier(bundle, options, classes).to(device)
    generator = None
    if cfg.masks:
        generator = get_generator(dataclasses.replace(masks or MasksParams(),
                                                      generator=cfg.masks))
    written = []
    for path, name in zip(map(Path, images), names, strict=True):
        rgb = read_image(path)
        image_masks = [_masks_of(generator, path, rgb.shape[:2])] if generator else None
        (label,) = predict(bundle, text, [rgb], options, device, image_masks)
        written.append(write_label(out / f"{name}_label.png", label))
        title = f"{path.name}: {cfg.clip_model} ({cfg.checkpoint or 'random init'})"
        written.append(report.labelled_overlay(out / f"{name}_overlay.png", title, rgb,
                                               label, classes))
    return written


def _masks_of(generator, path: Path, size: tuple[int, int]):
    """The generator's masks of one image at ``size``, or None where it gives none."""
    sidecar = path.with_suffix(".json")
    item = Item(path.stem, str(path), path.name, str(sidecar) if sidecar.is_file() else None)
    try:
        found = generator(item, load_image(path))
    except BadInput as exc:
        raise ValueError(f"{path}: no masks ({exc})") from None
    return rle.decode(found.rles, *size) if found.rles else None
