"""Refinements of dense logits at the image's size: PAMR and mask-guided classification.

PAMR (Araslanov & Roth, CVPR 2020) moves each pixel's logits towards those of its neighbours
that look like it: the affinity to each of the 8 neighbours at every dilation is
``−|I_i − I_j| / (0.1 σ_i)`` (σ_i: the standard deviation, per channel, of the pixel's 3×3
neighbourhoods at all dilations together), averaged over channels and turned into weights by
a softmax over all neighbours; the logits are then averaged with those weights ``steps``
times. SCLIP and NACLIP run it with 10 steps at dilations 8 and 16.

Mask-guided classification names each mask by the mean of the logits inside it and paints its
pixels with that class, largest masks first so that parts end up on top of their wholes;
pixels in no mask keep their own prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
_CENTRE = _OFFSETS.index((0, 0))
_POOL_ELEMENTS = 1 << 26  # mask pixels pooled per matrix product
_PAMR_ELEMENTS = 1 << 22  # logits refined per chunk of classes (fastest on the 2-core CPU)


def _around(x: torch.Tensor, dilations: Sequence[int]) -> list[torch.Tensor]:
    """Views ``(..., H, W)`` of every pixel's 3×3 neighbours at each dilation, edges
    replicated: 9 per dilation, in :data:`_OFFSETS` order."""
    pad, (h, w) = max(dilations), x.shape[-2:]
    padded = F.pad(x[None], (pad,) * 4, mode="replicate")[0]
    return [padded[..., pad + dy * d:pad + dy * d + h, pad + dx * d:pad + dx * d + w]
            for d in dilations for dy, dx in _OFFSETS]


def _ring(views: list[torch.Tensor]) -> list[torch.Tensor]:
    return [v for i, v in enumerate(views) if i % len(_OFFSETS) != _CENTRE]


def pamr(image: torch.Tensor, logits: torch.Tensor, steps: int = 10,
         dilations: Sequence[int] = (8, 16)) -> torch.Tensor:
    """Refine ``(C, H, W)`` logits with the affinities of the float ``(3, H, W)`` image."""
    if steps <= 0:
        return logits
    # shifted views, in-place sums, a few classes at a time (PAMR refines each class apart):
    # memory stays the output and a few chunks at any image size, and a chunk stays in cache
    views = _around(image, dilations)
    mean = sum(views) / len(views)
    spread = (sum((v - mean).square() for v in views) / (len(views) - 1)).sqrt()
    scale = 1e-8 + 0.1 * spread
    weights = torch.stack([((v - image).abs() / scale).mean(dim=0).neg()
                           for v in _ring(views)]).softmax(dim=0)
    out = torch.empty_like(logits)
    chunk = max(1, _PAMR_ELEMENTS // logits[0].numel())
    for c in range(0, len(logits), chunk):
        part = logits[c:c + chunk]
        for _ in range(steps):
            acc = torch.zeros_like(part)
            for view, weight in zip(_ring(_around(part, dilations)), weights, strict=True):
                acc.addcmul_(view, weight)
            part = acc
        out[c:c + chunk] = part
    return out


def paint_masks(logits: torch.Tensor, masks: np.ndarray | None) -> torch.Tensor:
    """Class ids ``(H, W)``: each pixel's argmax, then every mask ``(N, H, W)`` painted (largest
    first) with the class of its mean logits."""
    labels = logits.argmax(dim=0)
    if masks is None or len(masks) == 0:
        return labels
    flat_masks = np.ascontiguousarray(masks).reshape(len(masks), -1)
    area = torch.from_numpy(flat_masks.sum(1)).to(logits.device)  # torch's sum copies to int64
    stack = torch.from_numpy(flat_masks).to(logits.device)
    flat = logits.flatten(1)
    # a few masks at a time: a float copy of every mask at once is 4 bytes per mask pixel
    step = max(1, _POOL_ELEMENTS // flat.shape[1])
    sums = torch.cat([stack[i:i + step].to(flat.dtype) @ flat.T
                      for i in range(0, len(stack), step)])
    named = (sums / area.clamp(min=1)[:, None]).argmax(dim=1)
    labels = labels.flatten()
    for i in torch.argsort(area, descending=True, stable=True).tolist():
        labels[stack[i]] = named[i]
    return labels.view(logits.shape[1:])
