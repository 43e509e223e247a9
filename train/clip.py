"""open_clip models as this project uses them: loading, dense features, text features.

Dense features (docs/method.md): a ViT runs every block but the last as open_clip defines it
and the last in a dense mode where no token attends to another; ``ln_post`` and the visual
projection then apply to every patch token. A timm tower (ConvNeXt) applies its head's norm and
projection at every location. Positional embeddings are interpolated bicubically, so any input
size divisible by the tower's stride works. No open_clip code is copied or patched: the
modules are called piece by piece.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from config import DENSE_MODES, ConfigError

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

    Every problem is one line naming the params ``key``: a missing file, a file that is not a
    state dict of ``name``, or weights trained with another activation than ``name`` builds
    (OpenAI's weights need QuickGELU: ``ViT-B-16-quickgelu``, not ``ViT-B-16``).
    """
    import open_clip

    register_model_configs()
    model_key = f"{key.split('.')[0]}.clip_model" if "." in key else "--model"
    config = open_clip.get_model_config(name)
    if config is None:
        raise ConfigError(f"{model_key}: unknown open_clip model '{name}'")
    if pretrained and looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise FileNotFoundError(f"{key}: checkpoint not found: {pretrained}")
    check_activation(name, bool(config.get("quick_gelu", False)), pretrained, key, model_key)
    try:
        with _quiet_random_init(not pretrained):
            model, _, _ = open_clip.create_model_and_transforms(
                name, pretrained=pretrained or None, device=device)
    except (RuntimeError, KeyError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        if not pretrained or not looks_like_path(pretrained):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"{key}: {pretrained} is not an open_clip {name} state dict "
                         f"({first})") from None
    model.eval()
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    return CLIPBundle(model, open_clip.get_tokenizer(name), mean, std)


@contextlib.contextmanager
def _quiet_random_init(quiet: bool) -> Iterator[None]:
    """Silence open_clip's "No pretrained weights loaded" warning when random init is asked."""
    root = logging.getLogger()
    level = root.level
    if quiet:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def weights_info_path(path: str | Path) -> Path:
    """The JSON beside a weights file that says what it is (``final.pt`` → ``final.json``)."""
    return Path(path).with_suffix(".json")


def write_weights_info(path: str | Path, name: str, origin: str) -> Path:
    """Record beside a weights file the open_clip model it belongs to and its activation."""
    import open_clip

    register_model_configs()
    quick = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    info = weights_info_path(path)
    info.write_text(json.dumps({"open_clip_model": name, "quick_gelu": quick,
                                "pretrained": origin}, indent=2) + "\n")
    return info


def check_activation(name: str, quick_gelu: bool, pretrained: str, key: str,
                     model_key: str) -> None:
    """Refuse weights whose origin says they were trained with the other activation: an
    open_clip tag (its registry knows), or a file with a :func:`write_weights_info` record."""
    import open_clip

    trained = None
    if pretrained and not looks_like_path(pretrained):
        trained = open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu")
        origin = f"'{pretrained}'"
    elif pretrained and weights_info_path(pretrained).is_file():
        try:
            info = json.loads(weights_info_path(pretrained).read_text())
            trained = info.get("quick_gelu") if isinstance(info, dict) else None
        except (ValueError, UnicodeDecodeError):
            trained = None
        origin = f"{pretrained} (per {weights_info_path(pretrained).name})"
    if trained is None or bool(trained) == quick_gelu:
        return
    act = {True: "QuickGELU", False: "GELU"}
    hint = f"{name}-quickgelu" if trained else name.removesuffix("-quickgelu")
    raise ConfigError(f"{key}: {origin} was trained with {act[bool(trained)]} but "
                      f"{model_key} '{name}' builds {act[quick_gelu]}; use '{hint}'")


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


def _dense_block(block: nn.Module, x: torch.Tensor, mode: str = "pixelclip") -> torch.Tensor:
    """The last residual block without token mixing (batch-first ``x``, class token first).

    Every token goes through the value projection and the attention output projection alone.
    ``pixelclip`` (the official code) then adds the block's input *at the class token* to every
    token; ``maskclip`` adds each token's own input. The MLP residual follows in both.
    """
    attn = block.attn
    width = x.shape[-1]
    w_v = attn.in_proj_weight[2 * width:]
    b_v = attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None
    v = F.linear(block.ln_1(x), w_v, b_v)
    v = getattr(attn, "ln_inner", nn.Identity())(v)
    out = block.ls_1(getattr(block, "ln_attn", nn.Identity())(attn.out_proj(v)))
    if mode == "pixelclip":
        y = x[:, :1] + out
    elif mode == "maskclip":
        y = x + out
    else:
        raise ValueError(f"dense mode must be one of {DENSE_MODES}, got {mode!r}")
    return y + block.ls_2(block.mlp(block.ln_2(y)))


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


def dense_features(visual: nn.Module, images: torch.Tensor,
                   mode: str = "pixelclip") -> torch.Tensor:
    """Normalised images ``(B, 3, H, W)`` → joint-space features ``(B, D, H/s, W/s)``.

    Not L2-normalised. H and W must be divisible by the tower's :func:`stride`. ViTs run
    their last block in dense ``mode`` (:func:`_dense_block`); a timm tower (ConvNeXt) applies
    its head's norm and the projection at every location of its last feature map.
    """
    step = stride(visual)
    if images.shape[-2] % step or images.shape[-1] % step:
        raise ValueError(f"image size {tuple(images.shape[-2:])} not divisible by {step}")
    if not is_vit(visual):
        return _timm_dense(visual, images)
    if getattr(visual, "attn_pool", None) is not None:
        raise NotImplementedError("dense features of attention-pooled towers")
    x, (h, w) = _tokens(visual, images)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    x = _dense_block(blocks[-1], x if batch_first else x.transpose(0, 1), mode)
    x = visual.ln_post(x[:, 1:])
    if visual.proj is not None:
        x = x @ visual.proj
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


def _timm_dense(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """timm trunk features → the head's norm → ``visual.head`` per location: ``(B, D, h, w)``."""
    feats = visual.trunk.forward_features(images)
    feats = visual.trunk.head.norm(feats)
    return visual.head(feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


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
    return resolution // stride(visual)
