"""``dino``: region masks from dense DINO ViT features, clustered per image.

The image is resized so its long side is ``input_size`` (both sides multiples of the patch
size) and run through a timm DINO ViT (e.g. ``vit_small_patch8_224.dino``,
``vit_base_patch8_224.dino``). Patch tokens are L2-normalised, optionally joined by their
``(y, x)`` position times ``position_weight``, and clustered with k-means (k-means++ seeding,
seeded, so a rerun gives the same masks). Each patch's distances to the centroids are
upsampled bilinearly and the nearest centroid wins per pixel, which gives smooth boundaries.
Clusters are split into connected pieces, and pieces below ``min_area_frac`` of the image
are merged into the nearest region or dropped (``small_regions``).

Weights: ``masks.dino.checkpoint`` is a local file (official DINO ``.pth``, a training
checkpoint with a ``teacher`` entry, or timm ``.safetensors``). An empty or missing path is an
error naming the key; ``checkpoint: random`` builds random weights for tests/benchmarks only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from config import ConfigError, DinoParams, check_fields, resolve_device, to_dict
from files import load_tensors
from pipeline.generators import Item, MaskSet, encoder_dtype
from pipeline.generators.regions import (
    clean_labels,
    labels_to_masks,
    resize_labels,
)
from pipeline.images import LoadedImage
from shards.schema import Generator

VERSION = "1"
RANDOM = "random"  # masks.dino.checkpoint value that builds random weights (tests/bench only)
LABEL_SIDE = 1024  # labels are computed at most this long, then resized (bounded memory)


class DinoGenerator:
    """Callable ``(item, image) -> MaskSet``: DINO features → k-means → region masks."""

    def __init__(self, params: DinoParams, device: str = "auto",
                 model: torch.nn.Module | None = None) -> None:
        check_fields(params, "masks.dino")
        self.params = params
        self.device = resolve_device(device, "masks.device")
        model = model if model is not None else load_dino(params)
        self.model = model.to(self.device).eval()
        self.dtype = encoder_dtype(params.precision, self.device)
        self.info = Generator("dino", to_dict(params), VERSION)

    def __call__(self, item: Item, image: LoadedImage) -> MaskSet:
        return self.masks(image.rgb)

    @torch.inference_mode()
    def masks(self, rgb: np.ndarray) -> MaskSet:
        """Region masks of an RGB uint8 image, at the image's resolution, largest first."""
        height, width = rgb.shape[:2]
        features = self.patch_features(rgb)  # (h, w, C)
        grid = self._with_position(features)
        generator = torch.Generator(device="cpu").manual_seed(self.params.seed)
        centroids = kmeans(grid.flatten(0, 1), self.params.clusters, self.params.kmeans_iters,
                           generator)
        label_size = _fit_side(height, width, LABEL_SIDE)
        labels = assign_pixels(grid, centroids, label_size).cpu().numpy()
        min_area = max(1, round(self.params.min_area_frac * labels.size))
        labels = clean_labels(labels, min_area, self.params.small_regions,
                              split=self.params.split_components)
        return labels_to_masks(resize_labels(labels, height, width))

    def patch_features(self, rgb: np.ndarray) -> torch.Tensor:
        """L2-normalised patch tokens as an ``(h, w, C)`` fp32 grid."""
        patch = _patch_size(self.model)
        h, w = _fit_side(*rgb.shape[:2], self.params.input_size, multiple=patch)
        cfg = self.model.pretrained_cfg
        pixels = torch.tensor(rgb, device=self.device).permute(2, 0, 1)[None].float() / 255
        pixels = F.interpolate(pixels, size=(h, w), mode="bilinear", antialias=True,
                               align_corners=False)
        mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), device=self.device)
        std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), device=self.device)
        pixels = (pixels - mean[:, None, None]) / std[:, None, None]
        with torch.autocast(self.device.type, dtype=self.dtype,
                            enabled=self.dtype != torch.float32):
            tokens = self.model.forward_features(pixels)
        tokens = tokens[0, self.model.num_prefix_tokens:].float()
        return F.normalize(tokens, dim=-1).reshape(h // patch, w // patch, -1)

    def _with_position(self, features: torch.Tensor) -> torch.Tensor:
        if self.params.position_weight <= 0:
            return features
        h, w, _ = features.shape
        ys = (torch.arange(h, device=features.device) + 0.5) / h
        xs = (torch.arange(w, device=features.device) + 0.5) / w
        pos = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)
        return torch.cat([features, self.params.position_weight * pos], dim=-1)


def load_dino(params: DinoParams) -> torch.nn.Module:
    """The timm ViT of ``masks.dino.model`` with weights from ``masks.dino.checkpoint`` (or
    random weights for ``"random"``: tests and benchmarks only)."""
    if not params.checkpoint:
        raise ConfigError("masks.dino.checkpoint is empty: set it to a local DINO checkpoint "
                          f"for {params.model} (.pth or .safetensors)")
    path = Path(params.checkpoint)
    if params.checkpoint != RANDOM and not path.is_file():
        raise ConfigError(f"masks.dino.checkpoint: file not found: {path}")
    torch.manual_seed(params.seed)  # the random init, when checkpoint is "random"
    try:
        model = timm.create_model(params.model, pretrained=False, num_classes=0,
                                  dynamic_img_size=True)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"masks.dino.model: {exc}") from None
    if params.checkpoint != RANDOM:
        load_checkpoint(model, path)
    return model


def load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Load official DINO / timm weights into ``model``; raise naming the key on a mismatch."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = load_tensors(path, "masks.dino.checkpoint")
    for wrapper in ("teacher", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    state = {_strip(k): v for k, v in state.items() if not _strip(k).startswith("head")}
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = checkpoint_filter_fn(state, model)
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise ConfigError(f"masks.dino.checkpoint: {path} does not fit {model.__class__.__name__}"
                          f" (missing {', '.join(missing[:3])}...)")


def kmeans(points: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Centroids ``(k', D)`` of ``points`` ``(N, D)`` by Lloyd's algorithm with k-means++ seeds
    (``k' = min(k, N)``; an emptied cluster keeps its previous centroid)."""
    centroids = kmeans_pp(points, min(k, len(points)), generator)
    for _ in range(iters):
        assign = torch.cdist(points, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=len(centroids)).to(points.dtype)
        filled = counts > 0
        new = centroids.clone()
        new[filled] = sums[filled] / counts[filled, None]
        if torch.equal(new, centroids):
            break
        centroids = new
    return centroids


def kmeans_pp(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centroid drawn with probability ∝ squared distance."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    chosen = [first]
    dist = torch.cdist(points, points[first:first + 1])[:, 0] ** 2
    for _ in range(1, k):
        weights = dist.cpu().double()
        if float(weights.sum()) <= 0:
            break  # fewer distinct points than k
        nxt = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(nxt)
        dist = torch.minimum(dist, torch.cdist(points, points[nxt:nxt + 1])[:, 0] ** 2)
    return points[chosen].clone()


def assign_pixels(grid: torch.Tensor, centroids: torch.Tensor,
                  size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel nearest centroid at ``size``: patch→centroid distances upsampled bilinearly."""
    h, w, dim = grid.shape
    dist = torch.cdist(grid.reshape(-1, dim), centroids).T.reshape(1, -1, h, w)
    dist = F.interpolate(dist, size=size, mode="bilinear", align_corners=False)
    return dist[0].argmin(dim=0).to(torch.int32)


def _patch_size(model: torch.nn.Module) -> int:
    patch = model.patch_embed.patch_size
    return int(patch[0] if isinstance(patch, tuple | list) else patch)


def _fit_side(height: int, width: int, side: int, multiple: int = 1) -> tuple[int, int]:
    """``(h, w)`` with the long side ``side`` (kept when smaller and multiple == 1), each a
    positive multiple of ``multiple``."""
    scale = side / max(height, width)
    if multiple == 1 and scale >= 1:
        return height, width
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


def _strip(key: str) -> str:
    for prefix in ("module.", "backbone."):
        key = key.removeprefix(prefix)
    return key
