"""Training checkpoints (atomic, every N steps, resumable) and the final open_clip export.

A checkpoint is ``{model, teacher, optimizer, scaler, step, config, rng}`` in
``<out>/checkpoints/step_<step>.pt``; ``resume: latest`` picks the highest step. The export is
``<out>/final.pt``, a plain open_clip state dict of the whole CLIP with the fine-tuned image
tower, and ``<out>/prompts.pt`` with the learned prompts and their text features.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from train.clip import write_weights_info
from train.optim import atomic_save
from train.prompts import PromptLearner, prompt_record

CHECKPOINTS = "checkpoints"
STEP_RE = re.compile(r"^step_(\d+)\.pt$")
KEEP = 3  # periodic checkpoints kept on disk (older ones are deleted)


def checkpoint_path(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step_{step:07d}.pt"


def list_checkpoints(out: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint in ``out``, by step."""
    folder = Path(out) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_RE.match(p.name))]
    return sorted(found)


def resolve_resume(out: str | Path, resume: str) -> Path | None:
    """``""`` → None; ``latest`` → newest checkpoint (None if there is none); else a file."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(out)
        return found[-1][1] if found else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"train.resume: checkpoint not found: {resume}")
    return path


def save_checkpoint(out: str | Path, step: int, state: dict) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``; prune old ones."""
    path = checkpoint_path(out, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, path)
    for _, old in list_checkpoints(out)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=False)


def export(out: str | Path, clip: nn.Module, prompts: PromptLearner, name: str,
           origin: str) -> tuple[Path, Path]:
    """Write ``final.pt`` (open_clip state dict of model ``name``, with ``final.json`` saying
    so and where training started from) and ``prompts.pt`` beside it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in clip.state_dict().items()}
    atomic_save(state, out / "final.pt")
    write_weights_info(out / "final.pt", name, origin)
    atomic_save(prompt_record(prompts, clip), out / "prompts.pt")
    return out / "final.pt", out / "prompts.pt"
