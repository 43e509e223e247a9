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

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _neighbours(h: int, w: int, dilation: int, device) -> torch.Tensor:
    """``(9, H*W)`` flat index of each pixel's 3×3 neighbourhood at ``dilation`` (edges
    replicated); row 4 is the pixel itself."""
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)[None, :]
    rows = [((ys + dy * dilation).clamp(0, h - 1) * w + (xs + dx * dilation).clamp(0, w - 1))
            .flatten() for dy, dx in _OFFSETS]
    return torch.stack(rows)


def pamr(image: torch.Tensor, logits: torch.Tensor, steps: int = 10,
         dilations: Sequence[int] = (8, 16)) -> torch.Tensor:
    """Refine ``(C, H, W)`` logits with the affinities of the float ``(3, H, W)`` image."""
    if steps <= 0:
        return logits
    c, h, w = logits.shape
    index = torch.cat([_neighbours(h, w, d, image.device) for d in dilations])  # (9 n, HW)
    flat = image.reshape(3, -1)
    around = flat[:, index]  # (3, 9 n, HW)
    spread = around.std(dim=1, keepdim=True)  # over every neighbourhood at once
    ring = torch.tensor([i for i in range(len(index)) if i % 9 != 4], device=image.device)
    affinity = -(around[:, ring] - flat[:, None]).abs() / (1e-8 + 0.1 * spread)
    weights = affinity.mean(dim=0).softmax(dim=0)  # (8 n, HW): the 8 around, per dilation
    index = index[ring].flatten()
    out = logits.reshape(c, -1)
    for _ in range(steps):
        out = (out.index_select(1, index).view(c, len(ring), -1) * weights).sum(dim=1)
    return out.reshape(c, h, w)


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
