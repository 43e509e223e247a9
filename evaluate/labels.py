"""Label PNGs: class ids as single-channel PNG (uint8, or uint16 above 255 classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_label(path: str | Path, label: np.ndarray) -> Path:
    """Write a ``(H, W)`` class-id map as a lossless single-channel PNG (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint8 if label.dtype == np.uint8 else np.uint16
    Image.fromarray(np.ascontiguousarray(label, dtype=dtype)).save(path)
    return path


def read_label_png(path: str | Path) -> np.ndarray:
    """A single-channel label PNG as an integer array; ``ValueError`` naming the file otherwise."""
    try:
        with Image.open(path) as im:
            label = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read label {path}: {exc}") from None
    if label.ndim != 2:
        raise ValueError(f"label {path} is not a single-channel PNG (shape {label.shape})")
    return label
