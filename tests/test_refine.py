"""Refinements at the image's size (``evaluate.refine``): PAMR against a re-statement of the
published module, mask painting against a per-mask loop, both at any image size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evaluate.refine
from evaluate.refine import paint_masks, pamr


def test_mask_painting_and_pamr():
    """A mask takes the class of its mean logits, smaller masks on top, pixels outside keep
    their own; PAMR moves logits along the image, not across an edge."""
    logits = torch.zeros(3, 4, 6)
    logits[0] = 1.0
    logits[1, :, :2] = 2.0  # class 1 wins in the left two columns
    masks = np.zeros((2, 4, 6), bool)
    masks[0, :, :3] = True  # mean over 12 pixels: class 1 has 8 × 2 / 12 > 1
    masks[1, 0, 0] = True  # a smaller mask inside it, painted last
    logits[2, 0, 0] = 10.0
    labels = paint_masks(logits, masks)
    assert labels[0, 0] == 2 and (labels[:, :3].flatten()[1:] == 1).all()
    assert (labels[:, 3:] == 0).all()
    assert torch.equal(paint_masks(logits, None), logits.argmax(0))
    image = torch.zeros(3, 32, 32)
    image[:, :, 16:] = 255.0
    noisy = torch.randn(2, 32, 32, generator=torch.Generator().manual_seed(0))
    refined = pamr(image, noisy, steps=20, dilations=(1, 2))
    left, right = refined[:, :, :14], refined[:, :, 18:]
    assert left.std(dim=(1, 2)).max() < 0.5 * noisy.std()
    assert (left.mean(dim=(1, 2)) - noisy[:, :, :16].mean(dim=(1, 2))).abs().max() < 0.1
    assert (right.mean(dim=(1, 2)) - noisy[:, :, 16:].mean(dim=(1, 2))).abs().max() < 0.1


def published_pamr(image: torch.Tensor, logits: torch.Tensor, steps: int,
                   dilations: tuple[int, ...]) -> torch.Tensor:
    """PAMR as Araslanov & Roth's module defines it (the peers ship it as ``pamr.py``): each
    pixel's 3×3 neighbourhood at every dilation with edges replicated; the affinity to the 8
    around it ``−|I_i − I_j| / (1e-8 + 0.1 σ_i)``, σ the standard deviation over all 9 n
    positions, averaged over channels, softmax over the 8 n; then ``steps`` weighted means."""
    def neighbourhoods(x: torch.Tensor) -> torch.Tensor:  # (C, H, W) → (C, 9 n, H, W)
        c, h, w = x.shape
        return torch.cat([F.unfold(F.pad(x[None], (d,) * 4, mode="replicate"), 3, dilation=d)
                          .view(c, 9, h, w) for d in dilations], dim=1)

    around = neighbourhoods(image)
    ring = [i for i in range(around.shape[1]) if i % 9 != 4]
    spread = around.std(dim=1, keepdim=True)
    affinity = -(around[:, ring] - image[:, None]).abs() / (1e-8 + 0.1 * spread)
    weights = affinity.mean(dim=0).softmax(dim=0)
    for _ in range(steps):
        logits = (neighbourhoods(logits)[:, ring] * weights).sum(dim=1)
    return logits


@pytest.mark.parametrize("shape,dilations", [((40, 56), (8, 16)), ((23, 17), (1, 2, 3))])
def test_pamr_is_the_published_module(shape, dilations, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, *shape, generator=generator, dtype=torch.float64) * 255
    logits = torch.randn(5, *shape, generator=generator, dtype=torch.float64)
    want = published_pamr(image, logits, 10, dilations)
    assert torch.allclose(pamr(image, logits, 10, dilations), want, rtol=0, atol=1e-12)
    with monkeypatch.context() as m:  # classes refined 2 at a time: chunks of 2, 2 and 1
        m.setattr(evaluate.refine, "_PAMR_ELEMENTS", 2 * shape[0] * shape[1])
        assert torch.allclose(pamr(image, logits, 10, dilations), want, rtol=0, atol=1e-12)
    single = pamr(image.float(), logits.float(), 10, dilations).double()
    assert torch.allclose(single, want, rtol=0, atol=1e-4)
    assert not torch.allclose(pamr(image, logits, 9, dilations), want, rtol=0, atol=1e-3)


def test_mask_painting_pools_a_few_masks_at_a_time(monkeypatch):
    """Pooled in products of a few masks (here 2), every mask takes the class of its own mean
    logits, painted largest first; an empty mask paints nothing."""
    rng = np.random.default_rng(0)
    h, w = 30, 40
    masks = np.zeros((9, h, w), bool)
    for m in masks[:-1]:
        mh, mw = int(rng.integers(2, h)), int(rng.integers(2, w))
        y, x = int(rng.integers(0, h - mh + 1)), int(rng.integers(0, w - mw + 1))
        m[y:y + mh, x:x + mw] = True
    logits = torch.randn(6, h, w, generator=torch.Generator().manual_seed(1))
    want = logits.argmax(dim=0)
    area = masks.reshape(len(masks), -1).sum(1)
    for i in np.argsort(-area, kind="stable"):
        inside = torch.from_numpy(masks[i])
        if area[i]:
            want[inside] = logits[:, inside].mean(dim=1).argmax()
    monkeypatch.setattr(evaluate.refine, "_POOL_ELEMENTS", 2 * h * w)
    assert torch.equal(paint_masks(logits, masks), want)
