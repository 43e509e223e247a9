"""Training checkpoints (atomic, every N steps, resumable) and the final open_clip export.

A checkpoint is ``{model, teacher, optimizer, scaler, step, config, rng}`` in
``<out>/checkpoints/step_<step>.pt``, tensors and plain values only, so that every load is
``weights_only``: a crafted file cannot run code. ``resume: latest`` picks the highest step
(the one before when it is unreadable) and refuses a checkpoint of another configuration. The
export is ``<out>/final.pt``, a plain open_clip state dict of the whole CLIP with the
fine-tuned image tower (``final.json`` says which model), and ``<out>/prompts.pt`` with the
learned prompts and their text features.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from torch import nn

from files import load_tensors
from models.clip import write_weights_info
from models.prompts import PromptLearner, prompt_record
from train.optim import atomic_save

CHECKPOINTS = "checkpoints"
STEP_RE = re.compile(r"^step_(\d+)\.pt$")
KEEP = 3  # periodic checkpoints kept on disk (older ones are deleted)
RUN_FILES = ("final.pt", "final.json", "prompts.pt", "log.jsonl", "params.json", "summary.json")
# keys that may change when a run is resumed: where and how it runs, not what it computes
RESUME_FREE = ("resume", "overwrite", "out", "device", "log_every", "num_workers")
log = logging.getLogger(__name__)


def checkpoint_path(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step_{step:07d}.pt"


def list_checkpoints(out: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every checkpoint in ``out``, by step."""
    folder = Path(out) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_RE.match(p.name))]
    return sorted(found)


def claim_run_folder(out: str | Path, overwrite: bool) -> None:
    """A fresh run needs a folder without another run in it; ``overwrite`` clears that run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"train.out: {out} is a file, not a folder")
    found = [n for n in (*RUN_FILES, CHECKPOINTS) if (out / n).exists()]
    if not found:
        return
    if not overwrite:
        raise FileExistsError(f"train.out: {out} holds another run ({', '.join(found[:3])}); "
                              "resume it with --resume latest, or pass --overwrite")
    log.warning("train.out: %s: removing the run there (--overwrite)", out)
    for name in found:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def resume_state(out: str | Path, resume: str, config: dict) -> dict | None:
    """The checkpoint to continue from: ``""`` → None; ``latest`` → the newest readable one
    of ``out`` (None if there is none); else that file. Refuses another configuration's."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(out)
        for i, (_, path) in enumerate(reversed(found)):
            try:
                state = load_checkpoint(path)
            except ValueError as exc:
                older = "an older one" if i + 1 < len(found) else "none left"
                log.warning("%s; trying %s", exc, older)
                continue
            return _same_run(state, config, path)
        if found:
            raise ValueError(f"train.resume: no readable checkpoint in {Path(out) / CHECKPOINTS}")
        return None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"train.resume: checkpoint not found: {resume}")
    return _same_run(load_checkpoint(path), config, path)


def _same_run(state: dict, config: dict, path: Path) -> dict:
    """``state`` if its config is ``config`` but for :data:`RESUME_FREE` keys."""
    saved = state.get("config") if isinstance(state, dict) else None
    if not isinstance(saved, dict) or "step" not in state:
        raise ValueError(f"train.resume: {path} is not a training checkpoint")
    differ = sorted(k for k in saved.keys() | config.keys()
                    if k not in RESUME_FREE and _plain(saved.get(k)) != _plain(config.get(k)))
    if differ:
        shown = ", ".join(f"{k} ({saved.get(k)!r} → {config.get(k)!r})" for k in differ[:3])
        raise ValueError(f"train.resume: {path} was made with other settings: {shown}")
    return state


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def save_checkpoint(out: str | Path, step: int, state: dict) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``; prune old ones."""
    path = checkpoint_path(out, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, path)
    for _, old in list_checkpoints(out)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint onto the CPU (tensors and plain values only: a file that
    holds anything else is refused, in one line, before any of it runs)."""
    return load_tensors(path, "train.resume", "checkpoint")


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
