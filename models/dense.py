"""Dense features of open_clip image towers (docs/method.md).

A ViT runs every block but the last as open_clip defines it and the last in a dense mode where
no token attends to another (``pixelclip``, the official path: the class token's input is the
residual of every token; ``maskclip``: each token's own); ``ln_post`` and the visual projection
then apply to every patch token. A timm tower (ConvNeXt) applies its head's norm and
projection at every location. Positional embeddings are interpolated bicubically, so any input
size divisible by the tower's stride works: to the grid's size (open_clip's and PixelCLIP's
way), or by a scale factor of the grid's side plus 0.1 (DINO's, which the training-free peers
use). No open_clip code is copied or patched: the modules are called piece by piece.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from config import DENSE_MODES

# How positional embeddings reach a new grid: interpolated to its size, or by the scale factor
# (side + 0.1) / old side, which samples the old grid at slightly other points
POSITIONS = ("size", "scale")


def interpolate_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int],
                          new_grid: tuple[int, int], positions: str = "size") -> torch.Tensor:
    """``(1 + gh*gw, C)`` positional embedding → ``(1 + h*w, C)``, patch part bicubic, as
    ``positions`` says (:data:`POSITIONS`)."""
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if tuple(old_grid) == tuple(new_grid):
        return pos
    if positions == "scale" and new_grid[0] * new_grid[1] == old_grid[0] * old_grid[1]:
        return pos  # the peers interpolate only when the token count changes
    cls, grid = pos[:1], pos[1:]
    grid = grid.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2).float()
    if positions == "size":
        grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    else:
        factor = tuple((new + 0.1) / old for new, old in zip(new_grid, old_grid, strict=True))
        grid = F.interpolate(grid, scale_factor=factor, mode="bicubic", align_corners=False)
    grid = grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)
    return torch.cat([cls, grid], dim=0)


def _tokens(visual: nn.Module, images: torch.Tensor,
            positions: str = "size") -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch embedding + class token + interpolated positions + ``ln_pre``: ``(B, 1+hw, C)``."""
    x = visual.conv1(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    pos = interpolate_pos_embed(visual.positional_embedding, visual.grid_size, grid, positions)
    return visual.ln_pre(x + pos.to(x.dtype)), grid


def _dense_block(block: nn.Module, x: torch.Tensor, mode: str = "pixelclip",
                 grid: tuple[int, int] | None = None) -> torch.Tensor:
    """The last residual block in a dense ``mode`` (batch-first ``x``, class token first).

    ``pixelclip`` (the official code) and ``maskclip``: every token through the value and
    output projections alone, plus the block's input at the class token (``pixelclip``) or at
    the token itself (``maskclip``), then the MLP residual. The training-free modes change the
    attention: ``clearclip`` (query-query attention, no residual, no MLP), ``sclip`` (the sum
    of query-query and key-key attention, residual and MLP kept), ``naclip`` (key-key
    attention plus a Gaussian prior on the patch grid's distances, no residual, no MLP).
    """
    if mode in ("pixelclip", "maskclip"):
        out = block.ls_1(_attn_out(block, _values(block, block.ln_1(x))))
        y = (x[:, :1] if mode == "pixelclip" else x) + out
        return y + block.ls_2(block.mlp(block.ln_2(y)))
    if mode not in DENSE_MODES:
        raise ValueError(f"dense mode must be one of {DENSE_MODES}, got {mode!r}")
    q, k, v = _heads(block, block.ln_1(x))
    scale = q.shape[-1] ** -0.5
    if mode == "clearclip":
        weights = (q @ q.transpose(-1, -2) * scale).softmax(-1)
    elif mode == "sclip":
        weights = ((q @ q.transpose(-1, -2) * scale).softmax(-1)
                   + (k @ k.transpose(-1, -2) * scale).softmax(-1))
    else:
        prior = neighbourhood_prior(grid, NACLIP_STD, x.device, x.dtype)
        weights = (k @ k.transpose(-1, -2) * scale + prior).softmax(-1)
    mixed = (weights @ v).transpose(1, 2).reshape(x.shape)
    out = block.ls_1(_attn_out(block, mixed))
    if mode == "sclip":
        y = x + out
        return y + block.ls_2(block.mlp(block.ln_2(y)))
    return out


NACLIP_STD = 5.0  # NACLIP's Gaussian width, in patches


def _values(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    attn, width = block.attn, x.shape[-1]
    bias = attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None
    return getattr(attn, "ln_inner", nn.Identity())(
        F.linear(x, attn.in_proj_weight[2 * width:], bias))


def _attn_out(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return getattr(block, "ln_attn", nn.Identity())(block.attn.out_proj(x))


def _heads(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Queries, keys, values ``(B, heads, L, head_dim)`` of the block's attention."""
    attn = block.attn
    b, n, width = x.shape
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, attn.num_heads, width // attn.num_heads).permute(2, 0, 3, 1, 4)
    return q, k, getattr(attn, "ln_inner", nn.Identity())(v)


def neighbourhood_prior(grid: tuple[int, int], std: float, device=None,
                        dtype=None) -> torch.Tensor:
    """NACLIP's attention prior ``(1 + hw, 1 + hw)``: exp(−d² / 2σ²) between two patches at
    distance d on the grid (σ in patches), 0 wherever the class token is involved."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                            indexing="ij")
    cells = torch.stack([ys.flatten(), xs.flatten()], dim=1).to(torch.float32)
    prior = torch.exp(-torch.cdist(cells, cells).square() / (2 * std * std))
    return F.pad(prior, (1, 0, 1, 0)).to(dtype)


def is_vit(visual: nn.Module) -> bool:
    """Whether an open_clip image tower is a ViT (else a timm tower such as ConvNeXt)."""
    return hasattr(visual, "transformer") and hasattr(visual, "conv1")


def stride(visual: nn.Module) -> int:
    """Pixels per feature-grid cell: the ViT patch size, or a timm trunk's total reduction."""
    if is_vit(visual):
        return int(visual.patch_size[0])
    trunk = getattr(visual, "trunk", None)
    if trunk is None or not hasattr(trunk, "feature_info"):
        raise NotImplementedError(f"dense features of {type(visual).__name__} image towers")
    return int(trunk.feature_info[-1]["reduction"])


def dense_features(visual: nn.Module, images: torch.Tensor, mode: str = "pixelclip",
                   positions: str = "size") -> torch.Tensor:
    """Normalised images ``(B, 3, H, W)`` → joint-space features ``(B, D, H/s, W/s)``.

    Not L2-normalised. H and W must be divisible by the tower's :func:`stride`. ViTs run
    their last block in dense ``mode`` (:func:`_dense_block`), positional embeddings brought
    to the grid as ``positions`` says (:func:`interpolate_pos_embed`); a timm tower
    (ConvNeXt) applies its head's norm and the projection at every location of its last
    feature map.
    """
    step = stride(visual)
    if images.shape[-2] % step or images.shape[-1] % step:
        raise ValueError(f"image size {tuple(images.shape[-2:])} not divisible by {step}")
    if not is_vit(visual):
        if mode != "pixelclip":
            raise ValueError(f"dense mode '{mode}' changes a ViT's last block; a "
                             f"{type(visual).__name__} tower has one dense path (pixelclip)")
        return _timm_dense(visual, images)
    if getattr(visual, "attn_pool", None) is not None:
        raise NotImplementedError("dense features of attention-pooled towers")
    x, (h, w) = _tokens(visual, images, positions)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    x = _dense_block(blocks[-1], x if batch_first else x.transpose(0, 1), mode, (h, w))
    x = visual.ln_post(x[:, 1:])
    if visual.proj is not None:
        x = x @ visual.proj
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


def _timm_dense(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """timm trunk features → the head's norm → ``visual.head`` per location: ``(B, D, h, w)``."""
    feats = visual.trunk.forward_features(images)
    feats = visual.trunk.head.norm(feats)
    return visual.head(feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def grid_size(visual: nn.Module, resolution: int) -> int:
    """Feature-grid side for a square input of ``resolution`` pixels."""
    return resolution // stride(visual)
