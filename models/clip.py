"""open_clip models as this project uses them: loading (with the activation check and the
record beside every weights file), text features, image normalisation."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from config import ConfigError
from files import first_line

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
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
    """Register the JSON model configs of ``models/configs`` with open_clip (idempotent)."""
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
    except Exception as exc:  # torch.load's unpickler raises many kinds on arbitrary bytes
        if not pretrained or not looks_like_path(pretrained):
            raise
        raise ValueError(f"{key}: {pretrained} is not an open_clip {name} state dict "
                         f"({first_line(exc, 200)})") from None
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
