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


def _shifted(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """``(C, H, W)`` → ``(9, C, H, W)``: the 3×3 neighbourhood at ``dilation``, edges
    replicated; index 4 is the pixel itself."""
    d = dilation
    padded = F.pad(x[None], (d, d, d, d), mode="replicate")[0]
    h, w = x.shape[-2:]
    return torch.stack([padded[:, d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w]
                        for dy, dx in _OFFSETS])


def pamr(image: torch.Tensor, logits: torch.Tensor, steps: int = 10,
         dilations: Sequence[int] = (8, 16)) -> torch.Tensor:
    """Refine ``(C, H, W)`` logits with the affinities of the float ``(3, H, W)`` image."""
    if steps <= 0:
        return logits
    around = [_shifted(image, d) for d in dilations]  # each (9, 3, H, W)
    spread = torch.cat(around).std(dim=0, keepdim=True)  # over every neighbourhood at once
    neighbours = torch.cat([torch.cat([a[:4], a[5:]]) for a in around])  # 8 per dilation
    affinity = -(neighbours - image).abs() / (1e-8 + 0.1 * spread)
    weights = affinity.mean(dim=1).softmax(dim=0)  # (8 * len(dilations), H, W)
    for _ in range(steps):
        moved = [torch.cat([s[:4], s[5:]]) for s in (_shifted(logits, d) for d in dilations)]
        logits = (torch.cat(moved) * weights[:, None]).sum(dim=0)
    return logits


def paint_masks(logits: torch.Tensor, masks: np.ndarray | None) -> torch.Tensor:
    """Class ids ``(H, W)``: each pixel's argmax, then every mask ``(N, H, W)`` painted (largest
    first) with the class of its mean logits."""
    labels = logits.argmax(dim=0)
    if masks is None or len(masks) == 0:
        return labels
    stack = torch.from_numpy(np.ascontiguousarray(masks)).to(logits.device)
    area = stack.flatten(1).sum(1)
    keep = area > 0
    stack, area = stack[keep], area[keep]
    named = (torch.einsum("chw,nhw->nc", logits, stack.to(logits.dtype))
             / area[:, None]).argmax(dim=1)
    for i in torch.argsort(area, descending=True, stable=True).tolist():
        labels[stack[i]] = named[i]
    return labels
