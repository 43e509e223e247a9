"""Label maps → region masks: shared by the ``superpixel`` and ``dino`` generators.

A label map is an ``(H, W)`` integer array; every value is one region. The helpers split
regions into connected pieces, merge (or drop) pieces that are too small, and encode what is
left as COCO RLEs a few masks at a time, so a large image never holds all masks in memory.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_label

from pipeline.generators import MaskSet
from shards import rle as rle_codec

SMALL_REGION_MODES = ("merge", "drop")


def split_components(labels: np.ndarray) -> np.ndarray:
    """Relabel so that each 4-connected piece of each region gets its own id (0..n-1)."""
    shifted = labels.astype(np.int64) - labels.min() + 1  # no value equals the background
    return connected_label(shifted, background=0, connectivity=1).astype(np.int32) - 1


def merge_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Give every pixel of a region smaller than ``min_area`` the id of the nearest pixel of a
    large-enough region (so small fragments join their surroundings); ids are compacted."""
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    small = (counts < min_area)[inverse.reshape(labels.shape)]
    if not small.any() or small.all():
        return _compact(labels)
    _, (rows, cols) = ndimage.distance_transform_edt(small, return_indices=True)
    return _compact(labels[rows, cols])


def drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Set regions smaller than ``min_area`` to -1 (no mask); the others keep compact ids."""
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts >= min_area
    new_ids = np.where(keep, np.cumsum(keep) - 1, -1)
    return new_ids[inverse.reshape(labels.shape)].astype(np.int32)


def clean_labels(labels: np.ndarray, min_area: int, mode: str, split: bool = True) -> np.ndarray:
    """Split into connected pieces (optional), then merge or drop pieces below ``min_area``."""
    if mode not in SMALL_REGION_MODES:
        raise ValueError(f"small-region mode must be one of {SMALL_REGION_MODES}, got '{mode}'")
    if split:
        labels = split_components(labels)
    if min_area <= 1:
        return _compact(labels)
    return merge_small(labels, min_area) if mode == "merge" else drop_small(labels, min_area)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map to ``(height, width)``."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels.astype(np.int32), (width, height), interpolation=cv2.INTER_NEAREST)


def labels_to_masks(labels: np.ndarray, min_area: int = 1, chunk: int = 32) -> MaskSet:
    """One RLE per region id ≥ 0 of at least ``min_area`` pixels, largest first; masks are
    materialised ``chunk`` at a time and encoded at once."""
    flat = labels.ravel()
    areas = np.bincount(flat[flat >= 0]) if (flat >= 0).any() else np.zeros(0, np.int64)
    ids = [int(i) for i in np.argsort(-areas, kind="stable") if areas[i] >= max(1, min_area)]
    rles: list[dict] = []
    for start in range(0, len(ids), chunk):
        batch = np.asarray(ids[start:start + chunk])
        rles += rle_codec.encode(labels[None] == batch[:, None, None])
    return MaskSet(rles)


def dedupe(masks: MaskSet) -> MaskSet:
    """Drop masks whose RLE repeats an earlier one (e.g. a region found at two scales)."""
    seen: set[str] = set()
    keep = []
    for i, rle in enumerate(masks.rles):
        if rle["counts"] not in seen:
            seen.add(rle["counts"])
            keep.append(i)
    return MaskSet([masks.rles[i] for i in keep],
                   [masks.predicted_iou[i] for i in keep] if masks.predicted_iou else [],
                   [masks.stability_score[i] for i in keep] if masks.stability_score else [])


def _compact(labels: np.ndarray) -> np.ndarray:
    """Renumber ids to 0..n-1 in order of first value (ids < 0 stay -1)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    new_ids = np.cumsum(ids >= 0) - 1
    new_ids[ids < 0] = -1
    return new_ids[inverse.reshape(labels.shape)].astype(np.int32)
