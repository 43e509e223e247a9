"""Mask pooling, Sinkhorn-Knopp equipartition and cluster targets (docs/method.md)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def interp_matrix(size_out: int, size_in: int, device=None, dtype=None) -> torch.Tensor:
    """``(size_out, size_in)`` matrix of 1-d linear upsampling (``align_corners=False``)."""
    eye = torch.eye(size_in, device=device, dtype=dtype).unsqueeze(1)  # (in, 1, in)
    up = F.interpolate(eye, size=size_out, mode="linear", align_corners=False)
    return up[:, 0].t()


def mask_pool(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Average dense features, bilinearly upsampled to the masks' size, inside each mask.

    ``features`` ``(B, D, h, w)``; ``masks`` ``(B, M, H, W)`` (bool or float, padded with empty
    masks) → ``(B, M, D)``; empty masks give zero vectors. Bilinear upsampling is linear and
    separable, so instead of upsampling D feature maps the masks are projected onto the
    feature grid with the transposed interpolation matrices (same result, far less work), then
    all masks of all images are pooled in one batched matmul.
    """
    (h, w), (H, W) = features.shape[-2:], masks.shape[-2:]
    weights = masks.to(features.dtype)
    area = weights.sum(dim=(-2, -1)).clamp(min=1.0)
    uy = interp_matrix(H, h, features.device, features.dtype)
    ux = interp_matrix(W, w, features.device, features.dtype)
    grid = torch.einsum("yh,bmyx,xw->bmhw", uy, weights, ux)
    pooled = torch.einsum("bdhw,bmhw->bmd", features, grid)
    return pooled / area.unsqueeze(-1)


def mask_pool_naive(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Reference implementation of :func:`mask_pool` with a Python loop over masks."""
    size = masks.shape[-2:]
    features = F.interpolate(features, size=size, mode="bilinear", align_corners=False)
    out = features.new_zeros(masks.shape[0], masks.shape[1], features.shape[1])
    for b in range(masks.shape[0]):
        for m in range(masks.shape[1]):
            mask = masks[b, m].bool()
            if mask.any():
                out[b, m] = features[b][:, mask].mean(dim=1)
    return out


@torch.no_grad()
def sinkhorn(logits: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """SwAV-style Sinkhorn-Knopp: ``(N, K)`` logits → soft assignment ``(N, K)``.

    Starts from the softmax over prototypes and alternately normalises the prototype
    marginals to 1/K and the sample marginals to 1/N, with sums all-reduced across DDP ranks
    so the equipartition holds over the global batch. Each row of the result sums to 1.
    """
    q = logits.float().softmax(dim=-1).t()  # (K, N)
    k = q.shape[0]
    total = q.sum()
    if _distributed():
        dist.all_reduce(total)
    q = q / total
    n_global = total  # softmax rows sum to 1, so the total is the global sample count
    for _ in range(iters):
        rows = q.sum(dim=1, keepdim=True)
        if _distributed():
            dist.all_reduce(rows)
        q = q / rows.clamp(min=1e-12) / k
        q = q / q.sum(dim=0, keepdim=True).clamp(min=1e-12) / n_global
    return (q * n_global).t()


def assign(mask_feats: torch.Tensor, valid: torch.Tensor, centres: torch.Tensor,
           scale: float, iters: int) -> torch.Tensor:
    """Hard cluster of every valid mask: ``(B, M, D)``, ``(B, M)`` → ``(B, M)`` long, -1 = none."""
    sims = F.normalize(mask_feats[valid].float(), dim=-1) @ F.normalize(centres.float(), dim=-1).t()
    labels = torch.full(valid.shape, -1, dtype=torch.long, device=valid.device)
    if sims.shape[0] or _distributed():
        q = sinkhorn(scale * sims, iters) if iters > 0 else (scale * sims).softmax(-1)
        labels[valid] = q.argmax(dim=-1)
    return labels


def cluster_targets(masks: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Union of each image's masks per assigned cluster: ``(B, M, H, W)`` → ``(B, k, H, W)``."""
    onehot = F.one_hot(labels.clamp(min=0), k).to(torch.float32)
    onehot = onehot * (labels >= 0).unsqueeze(-1)
    target = torch.einsum("bmk,bmhw->bkhw", onehot, masks.to(torch.float32))
    return target.clamp(max=1.0)


def usage(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Masks per cluster ``(k,)`` over the given labels (ignoring -1)."""
    return torch.bincount(labels[labels >= 0].flatten(), minlength=k)
