"""Learning-rate schedule, optimiser parameter groups and small run utilities."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch

from files import atomic_path


def lr_factor(step: int, total: int, warmup: int = 0, end_factor: float = 0.0) -> float:
    """Multiplier of the base lr at ``step``: linear warm-up, then cosine to ``end_factor``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Scale every group's ``base_lr`` by ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def decay_groups(named: list[tuple[str, torch.nn.Parameter]], lr: float,
                 weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices decay, 1-d tensors (norms, biases, embeddings' scales) don't."""
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
    keep = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    for group in groups:
        group["lr"] = group["base_lr"] = lr
    return [g for g in groups if g["params"]]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """RNG states of Python, numpy and torch (CPU) as tensors and lists, for bit-exact resume
    from a checkpoint that loads with ``weights_only``."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(words), gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`."""
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` that a reader never sees half written (:func:`files.atomic_path`).
    Saved through a handle, so the bytes do not depend on the file's name (torch names the
    archive inside after a path, ``archive`` for a handle)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
