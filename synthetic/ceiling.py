"""What within-mask consistency could buy a CLIP on synthetic val (a diagnostic, not a metric
of the method): its pixel mIoU against the mIoU reached when every ground-truth region mask is
labelled by its own pooled feature, and how often a region is named right.

PixelCLIP makes dense features agree inside masks, so its gain is bounded by the second number
(for masks it groups right), and more tightly by the same map limited to the model's feature
grid (each patch names the region covering most of it: what a perfectly consistent model with
this naming paints, one class per patch); RESULTS.md uses these to check the stand-in CLIP.
The in-region agreement says how much room there is: inside regions named right, the share of
pixels whose own prediction already agrees, away from the region's edge (farther than half a
patch) and near it (where the coarse feature grid blurs classes together).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from config import EvaluateParams, resolve_device
from evaluate.benchmarks import load_benchmark, load_pair, synthetic_layout
from evaluate.inference import (
    features_to_logits,
    label_map,
    options_for,
    text_classifier,
    to_input,
    whole_features,
)
from evaluate.metrics import confusion_matrix, summarize
from models.clip import load_clip
from models.dense import stride
from pipeline.generators.sa1b import read_annotation
from shards import rle


@dataclass(frozen=True)
class Ceiling:
    pixel_miou: float  # as the evaluate stage scores it
    region_miou: float  # each ground-truth region labelled by its mean feature
    grid_region_miou: float  # the same map as the feature grid can paint it
    mask_accuracy: float  # % of regions whose mean feature names their class
    per_class_accuracy: dict[str, float]  # same, per class present
    interior_agreement: float  # % of pixels agreeing with their region's (right) name, inside
    edge_agreement: float  # same within half a patch of the region's edge
    images: int

    def line(self) -> str:
        return (f"pixel mIoU {self.pixel_miou:.1f} | region-labelled mIoU {self.region_miou:.1f}"
                f" (on the feature grid {self.grid_region_miou:.1f})"
                f" | regions named right {self.mask_accuracy:.1f} % | pixels agreeing with their"
                f" region: interior {self.interior_agreement:.1f} %, edge"
                f" {self.edge_agreement:.1f} % ({self.images} images)")


def agreement(pixel: np.ndarray, mask: np.ndarray, cls: int, margin: int) -> np.ndarray:
    """``[[agreeing, pixels] inside, [agreeing, pixels] at the edge]`` of one region: pixels of
    ``mask`` predicted ``cls``, split at ``margin`` pixels from the mask's border."""
    inner = ndimage.binary_erosion(mask, iterations=margin)
    return np.array([[(pixel[sel] == cls).sum(), sel.sum()] for sel in (inner, mask & ~inner)])


def grid_limited(labels: np.ndarray, n: int, grid: tuple[int, int],
                 feature_size: tuple[int, int]) -> np.ndarray:
    """``labels`` as a model with an ``h×w`` feature ``grid`` paints them when each cell names
    the class covering most of it, upsampled as inference upsamples logits (to
    ``feature_size``, then to the label size)."""
    onehot = F.one_hot(torch.from_numpy(labels.astype(np.int64)), n).permute(2, 0, 1)
    cells = F.adaptive_avg_pool2d(onehot[None].float(), grid).argmax(dim=1)
    logits = F.one_hot(cells, n).permute(0, 3, 1, 2).float()
    logits = F.interpolate(logits, size=feature_size, mode="bilinear", align_corners=False)
    return label_map(logits[0], labels.shape)


def region_masks(image_path: Path, shape: tuple[int, int]) -> np.ndarray:
    """``(N, *shape)`` bool: the unlabeled region masks stored beside a synthetic image."""
    path = image_path.with_suffix(".json")
    try:
        return rle.decode(read_annotation(path)[0], *shape)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


@torch.inference_mode()
def region_ceiling(cfg: EvaluateParams, checkpoint: str) -> Ceiling:
    """Score ``checkpoint`` (path or tag of ``cfg.clip_model``) on ``cfg.synthetic`` val.

    Whole-image inference (the evaluate stage's default): one forward pass per image gives
    both the pixel predictions and the features pooled per region.
    """
    device = resolve_device(cfg.device, "evaluate.device")
    options = options_for(cfg)
    bench = load_benchmark(synthetic_layout(cfg.synthetic), cfg.synthetic, cfg.max_images)
    bundle = load_clip(cfg.clip_model, checkpoint, device, key="evaluate.checkpoint")
    text = text_classifier(bundle, bench.classes).to(device)
    n = len(bench.classes)
    pixel_cm, region_cm, grid_cm = (np.zeros((n, n), np.int64) for _ in range(3))
    hits: dict[int, list[bool]] = {}
    agree = np.zeros((2, 2), np.int64)
    side = (options.resolution, options.resolution)
    fsize = (options.feature_size, options.feature_size)
    patch = stride(bundle.model.visual)
    for pair in bench.pairs:
        image, truth = load_pair(pair, n)
        feats = whole_features(bundle, to_input(image, side, bundle, device)[None],
                               options.dense_mode)
        grid = tuple(feats.shape[-2:])
        logits = features_to_logits(feats, text, fsize)
        pixel = label_map(logits[0], truth.shape)
        pixel_cm += confusion_matrix(pixel, truth, n)
        feats = F.interpolate(feats.float(), size=truth.shape, mode="bilinear",
                              align_corners=False)[0]
        region = pixel.copy()  # a pixel outside every mask keeps its own prediction
        margin = max(1, round(truth.shape[0] * patch / options.resolution / 2))
        # largest first, so that parts (a roof, a wheel) end up labelled on top of their whole
        for mask in sorted(region_masks(pair.image, truth.shape), key=lambda m: -m.sum()):
            pooled = F.normalize(feats[:, torch.from_numpy(mask).to(device)].mean(dim=1), dim=0)
            named = int((text @ pooled).argmax())
            region[mask] = named
            cls = int(np.bincount(truth[mask]).argmax())
            if cls < n:
                hits.setdefault(cls, []).append(named == cls)
                if named == cls:
                    agree += agreement(pixel, mask, cls, margin)
        region_cm += confusion_matrix(region, truth, n)
        grid_cm += confusion_matrix(grid_limited(region, n, grid, fsize), truth, n)
    everything = [h for v in hits.values() for h in v]
    return Ceiling(
        pixel_miou=summarize(pixel_cm, bench.classes)["miou"],
        region_miou=summarize(region_cm, bench.classes)["miou"],
        grid_region_miou=summarize(grid_cm, bench.classes)["miou"],
        mask_accuracy=100 * float(np.mean(everything)) if everything else 0.0,
        per_class_accuracy={bench.classes[c]: 100 * float(np.mean(v))
                            for c, v in sorted(hits.items())},
        interior_agreement=float(100 * agree[0, 0] / max(agree[0, 1], 1)),
        edge_agreement=float(100 * agree[1, 0] / max(agree[1, 1], 1)),
        images=len(bench.pairs))
