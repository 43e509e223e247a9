"""COCO RLE encode/decode of binary masks through pycocotools."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(masks: np.ndarray) -> list[dict]:
    """Encode boolean masks ``(N, H, W)`` to JSON-ready COCO RLEs (``counts`` as str)."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if len(masks) == 0:
        return []
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    rles = mask_utils.encode(fortran)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def decode(rles: list[dict], height: int, width: int) -> np.ndarray:
    """Decode COCO RLEs to a boolean array ``(N, H, W)``; checks every RLE's size."""
    for i, rle in enumerate(rles):
        if list(rle["size"]) != [height, width]:
            raise ValueError(f"RLE {i} has size {rle['size']}, expected {[height, width]}")
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    decoded = mask_utils.decode([_as_bytes(r) for r in rles])
    return decoded.transpose(2, 0, 1).astype(bool)


def area(rles: list[dict]) -> list[int]:
    return [int(a) for a in mask_utils.area([_as_bytes(r) for r in rles])] if rles else []


def bbox(rles: list[dict]) -> list[list[float]]:
    """XYWH boxes, as in SA-1B / COCO."""
    if not rles:
        return []
    return [[float(v) for v in box] for box in mask_utils.toBbox([_as_bytes(r) for r in rles])]


def _as_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode()
    return {"size": list(rle["size"]), "counts": counts}
