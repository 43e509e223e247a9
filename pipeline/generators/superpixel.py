"""``superpixel``: SAM-like region masks from pixels alone (no weights, no GPU).

Felzenszwalb's graph segmentation (or SLIC) runs on a copy of the image whose long side is at
most ``work_side``; ``levels`` > 1 adds coarser segmentations (scale ×4 per level, or ÷4
segments for SLIC), so masks overlap across granularities like SAM's whole/part/subpart
masks. Pieces below ``min_area_frac`` of the image are merged into their neighbours or dropped.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import felzenszwalb, slic

from config import SuperpixelParams, check_fields, to_dict
from pipeline.generators import Item, MaskSet
from pipeline.generators.regions import (
    clean_labels,
    dedupe,
    labels_to_masks,
    resize_labels,
)
from pipeline.images import LoadedImage, fit_long_side
from shards.schema import Generator

VERSION = "1"


class SuperpixelGenerator:
    """Callable ``(item, image) -> MaskSet``; deterministic for given params and pixels."""

    def __init__(self, params: SuperpixelParams) -> None:
        check_fields(params, "masks.superpixel")
        self.params = params
        self.info = Generator("superpixel", to_dict(params), VERSION)

    def __call__(self, item: Item, image: LoadedImage) -> MaskSet:
        return superpixel_masks(image.rgb, self.params)


def superpixel_masks(rgb: np.ndarray, params: SuperpixelParams) -> MaskSet:
    """Region masks of an RGB uint8 image at its own resolution, largest first per level."""
    height, width = rgb.shape[:2]
    work = fit_long_side(rgb, params.work_side)
    min_area = max(1, round(params.min_area_frac * work.shape[0] * work.shape[1]))
    rles: list[dict] = []
    for level in range(params.levels):
        labels = segment(work, params, level)
        labels = clean_labels(labels, min_area, params.small_regions)
        labels = resize_labels(labels, height, width)
        rles += labels_to_masks(labels).rles
    return dedupe(MaskSet(rles))


def segment(rgb: np.ndarray, params: SuperpixelParams, level: int = 0) -> np.ndarray:
    """One over-segmentation of ``rgb`` as an ``(H, W)`` int32 label map; coarser per level."""
    if params.method == "felzenszwalb":
        labels = felzenszwalb(rgb, scale=params.scale * 4**level, sigma=params.sigma,
                              min_size=params.min_size * 2**level)
    else:
        labels = slic(rgb, n_segments=max(2, params.n_segments // 4**level),
                      compactness=params.compactness, sigma=params.sigma, start_label=0)
    return labels.astype(np.int32)
