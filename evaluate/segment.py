"""Segment arbitrary images with arbitrary class names: overlay PNG (with legend) + label PNG.

Works with any open_clip ViT checkpoint (a local file or an open_clip ``pretrained`` tag), the
same inference path as the evaluate stage.
"""

from __future__ import annotations

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
from train.clip import load_clip


def parse_classes(text: str) -> list[str]:
    """``"sky, grass,dog"`` → ``["sky", "grass", "dog"]``; at least one name is required."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("--classes: give at least one class name, e.g. 'sky,grass,dog'")
    if len(set(names)) != len(names):
        raise ValueError(f"--classes: duplicate names in {text!r}")
    return names


def segment(images: list[str | Path], classes: list[str], out: str | Path, model: str,
            checkpoint: str, options: InferenceOptions, device: str = "auto") -> list[Path]:
    """Write ``<stem>_overlay.png`` and ``<stem>_label.png`` per image into ``out``; return them."""
    for image in images:
        if not Path(image).is_file():
            raise FileNotFoundError(f"image not found: {image}")
    torch_device = resolve_device(device, "--device")
    bundle = load_clip(model, checkpoint, torch_device, key="--checkpoint")
    check_resolution(bundle, options)
    text = text_classifier(bundle, classes).to(torch_device)
    out = Path(out)
    written = []
    for path in map(Path, images):
        rgb = read_image(path)
        (label,) = predict(bundle, text, [rgb], options, torch_device)
        written.append(write_label(out / f"{path.stem}_label.png", label))
        title = f"{path.name}: {model} ({checkpoint or 'random init'})"
        written.append(report.labelled_overlay(out / f"{path.stem}_overlay.png", title, rgb,
                                               label, classes))
    return written
