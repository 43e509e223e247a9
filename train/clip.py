"""open_clip models as this project uses them: loading, dense features, text features.

Dense features follow METHOD.md §2: every block but the last runs as open_clip defines it; the
last block runs in "dense" (value-path) mode, where a token never attends to another one: its
normalised input goes through the value projection and the attention output projection, then
the residual and the MLP. ``ln_post`` and the visual projection then apply to every token, so
each patch gets an embedding in the joint image-text space (MaskCLIP-style). Positional
embeddings are interpolated bicubically so any input size divisible by the patch size works.
Nothing of open_clip's model code is copied or patched: the modules are called piece by piece.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_REGISTERED = False
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass
class CLIPBundle:
    """A loaded CLIP with what it needs around it."""

    model: nn.Module
    tokenizer: object
    mean: tuple
    std: tuple


def register_model_configs() -> None:
    """Register the JSON model configs of ``train/model_configs`` with open_clip (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    _REGISTERED = True


def looks_like_path(value: str) -> bool:
    """Whether a ``pretrained`` value names a file rather than an open_clip tag."""
    return "/" in value or "\\" in value or value.endswith(_CHECKPOINT_SUFFIXES)


def load_clip(name: str, pretrained: str = "", device: str | torch.device = "cpu",
              *, key: str = "train.clip_pretrained") -> CLIPBundle:
    """An open_clip model in eval mode: random init (``""``), an open_clip tag, or a local file.

    A path-looking ``pretrained`` that does not exist raises ``FileNotFoundError`` naming the
    params ``key`` and the path.
    """
    import open_clip

    register_model_configs()
    if pretrained and looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise FileNotFoundError(f"{key}: checkpoint not found: {pretrained}")
    model, _, _ = open_clip.create_model_and_transforms(
        name, pretrained=pretrained or None, device=device)
    model.eval()
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    return CLIPBundle(model, open_clip.get_tokenizer(name), mean, std)


def interpolate_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int],
                          new_grid: tuple[int, int]) -> torch.Tensor:
    """``(1 + gh*gw, C)`` positional embedding → ``(1 + h*w, C)``, patch part bicubic."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls, grid = pos[:1], pos[1:]
    grid = grid.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)
    return torch.cat([cls, grid], dim=0)


def _tokens(visual: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch embedding + class token + interpolated positions + ``ln_pre``: ``(B, 1+hw, C)``."""
    x = visual.conv1(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)
    pos = interpolate_pos_embed(visual.positional_embedding, visual.grid_size, grid)
    return visual.ln_pre(x + pos.to(x.dtype)), grid


def _dense_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last residual block without token mixing: value path, out-projection, MLP."""
    attn = block.attn
    width = x.shape[-1]
    w_v = attn.in_proj_weight[2 * width:]
    b_v = attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None
    v = F.linear(block.ln_1(x), w_v, b_v)
    v = getattr(attn, "ln_inner", nn.Identity())(v)
    out = attn.out_proj(v)
    out = getattr(block, "ln_attn", nn.Identity())(out)
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def dense_features(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Normalised images ``(B, 3, H, W)`` → joint-space features ``(B, D, H/p, W/p)``.

    Not L2-normalised. H and W must be divisible by the patch size.
    """
    patch = visual.patch_size
    if images.shape[-2] % patch[0] or images.shape[-1] % patch[1]:
        raise ValueError(f"image size {tuple(images.shape[-2:])} not divisible by patch {patch}")
    if getattr(visual, "attn_pool", None) is not None:
        raise NotImplementedError("dense features of attention-pooled towers")
    x, (h, w) = _tokens(visual, images)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    x = _dense_block(blocks[-1], x)
    if not batch_first:
        x = x.transpose(0, 1)
    x = visual.ln_post(x[:, 1:])
    if visual.proj is not None:
        x = x @ visual.proj
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer, texts: list[str]) -> torch.Tensor:
    """Texts → ``(N, D)`` L2-normalised text embeddings (no gradients)."""
    device = next(model.parameters()).device
    tokens = tokenizer(list(texts)).to(device)
    return F.normalize(model.encode_text(tokens).float(), dim=-1)


def normalise(images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 (or 0..255 float) ``(B, 3, H, W)`` → float normalised with CLIP's mean and std."""
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


def grid_size(visual: nn.Module, resolution: int) -> int:
    """Feature-grid side for a square input of ``resolution`` pixels."""
    return int(math.floor(resolution / visual.patch_size[0]))
