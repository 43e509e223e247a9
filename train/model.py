"""The PixelCLIP training model: student tower, prompts, head; teacher; the loss of one batch."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from config import TrainParams
from models.clip import normalise
from models.dense import dense_features
from models.prompts import PromptLearner
from train.clustering import assign, cluster_targets, mask_pool
from train.head import UpsampleHead

TRAINABLE_MODES = ("attention", "full", "none")


class PixelCLIP(nn.Module):
    """What trains (and what DDP wraps): the student image tower, the prompts and the head."""

    def __init__(self, visual: nn.Module, prompts: PromptLearner, head: UpsampleHead,
                 dense_mode: str = "pixelclip") -> None:
        super().__init__()
        self.dense_mode = dense_mode
        self.visual = visual
        self.prompts = prompts
        self.head = head

    def forward(self, images: torch.Tensor, text_model: nn.Module,
                size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Student images → per-prompt mask logits ``(B, k, *size)`` and prompt embeddings."""
        centres = self.prompts(text_model)
        feats = F.normalize(dense_features(self.visual, images, self.dense_mode), dim=1)
        scores = torch.einsum("kd,bdhw->bkhw", F.normalize(centres, dim=-1).to(feats.dtype), feats)
        b, k, h, w = scores.shape
        logits = self.head(scores.reshape(b * k, 1, h, w))
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits.reshape(b, k, *size), centres


def set_trainable(visual: nn.Module, mode: str) -> list[str]:
    """Freeze the image tower except, per ``mode``, attention + positions, all, or nothing."""
    if mode not in TRAINABLE_MODES:
        raise ValueError(f"train.trainable must be one of {TRAINABLE_MODES}, got {mode!r}")
    names = []
    for name, param in visual.named_parameters():
        on = mode == "full" or (mode == "attention" and ("attn" in name or "position" in name))
        param.requires_grad_(on)
        if on:
            names.append(name)
    if mode != "none" and not names:
        raise ValueError(f"train.trainable: '{mode}' trains nothing in a "
                         f"{type(visual).__name__} tower (ConvNeXt: use full)")
    return names


def make_teacher(visual: nn.Module) -> nn.Module:
    """A frozen copy of the student tower (the momentum encoder)."""
    teacher = copy.deepcopy(visual)
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, gamma: float) -> None:
    """θ_t ← γ θ_t + (1 − γ) θ_s over every parameter of the tower."""
    for p_t, p_s in zip(teacher.parameters(), student.parameters(), strict=True):
        p_t.mul_(gamma).add_(p_s.detach().to(p_t.dtype), alpha=1.0 - gamma)


def batch_loss(net: nn.Module, text_model: nn.Module, teacher: nn.Module, batch: dict,
               cfg: TrainParams, stats: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one (micro-)batch and the hard cluster label of every mask ``(B, M)``.

    ``net`` is the :class:`PixelCLIP` (or its DDP wrapper); ``stats`` = (mean, std).
    Cluster centres are the current prompt embeddings (detached for the assignment).
    """
    masks, valid = batch["masks"], batch["valid"]
    size = tuple(masks.shape[-2:])
    student = normalise(batch["student"], *stats)
    logits, centres = net(student, text_model, size)
    with torch.no_grad():
        plain = normalise(batch["teacher"], *stats)
        source = teacher if cfg.use_momentum else _module(net).visual
        feats = dense_features(source, plain, cfg.teacher_dense_mode or cfg.dense_mode).float()
        mask_feats = mask_pool(feats, masks)
        iters = cfg.sinkhorn_iters if cfg.use_clustering else 0
        labels = assign(mask_feats, valid, centres.detach(), cfg.logit_scale, iters)
        targets = cluster_targets(masks, labels, centres.shape[0])
    covered = masks.any(dim=1)  # (B, H, W): only pixels inside at least one mask count
    pred = logits.float().permute(0, 2, 3, 1)[covered]
    target = targets.permute(0, 2, 3, 1)[covered]
    if pred.numel() == 0:
        return logits.sum() * 0.0, labels
    return F.binary_cross_entropy_with_logits(pred, target), labels


def _module(net: nn.Module) -> nn.Module:
    return net.module if hasattr(net, "module") else net
