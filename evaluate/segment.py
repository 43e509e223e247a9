"""Segment arbitrary images with arbitrary class names: overlay PNG (with legend) + label PNG.

Works with any open_clip ViT checkpoint (a local file or an open_clip ``pretrained`` tag), the
same inference path as the evaluate stage.
"""

from __future__ import annotations

import os
from pathlib import Path

from config import resolve_device
from evaluate import report
from evaluate.benchmarks import read_image
from evaluate.inference import (
    InferenceOptions,
    check_resolution,
    predict,
    text_classifier,
)
from evaluate.labels import write_label
from models.clip import load_clip


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


def segment(images: list[str | Path], classes: list[str], out: str | Path, model: str,
            checkpoint: str, options: InferenceOptions, device: str = "auto") -> list[Path]:
    """Write ``<name>_overlay.png`` and ``<name>_label.png`` per image into ``out`` (names
    from :func:`output_names`); return them."""
    for image in images:
        if not Path(image).is_file():
            raise FileNotFoundError(f"image not found: {image}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out: {out} is a file, not a folder")
    names = output_names([Path(p) for p in images])
    torch_device = resolve_device(device, "--device")
    bundle = load_clip(model, checkpoint, torch_device, key="--checkpoint")
    check_resolution(bundle, options)
    text = text_classifier(bundle, classes).to(torch_device)
    written = []
    for path, name in zip(map(Path, images), names, strict=True):
        rgb = read_image(path)
        (label,) = predict(bundle, text, [rgb], options, torch_device)
        written.append(write_label(out / f"{name}_label.png", label))
        title = f"{path.name}: {model} ({checkpoint or 'random init'})"
        written.append(report.labelled_overlay(out / f"{name}_overlay.png", title, rgb,
                                               label, classes))
    return written
