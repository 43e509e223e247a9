"""The ``train`` stage: PixelCLIP fine-tuning, read top to bottom.

``run(cfg)`` builds the model (student tower + prompts + head, frozen text tower, momentum
teacher), streams batches, and takes ``cfg.steps`` optimiser steps (each ``grad_accum``
micro-batches) with a cosine schedule. The data stream restarts with a new seed at every
checkpoint boundary, so ``--resume latest`` continues bit-for-bit. Under ``torchrun`` it runs
DDP (NCCL on GPUs, gloo on CPUs); Sinkhorn marginals are all-reduced across ranks.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from config import TrainParams, resolve_device, to_dict
from models.clip import load_clip
from models.prompts import PromptLearner, read_vocab
from shards.reader import list_shards
from train import checkpoint as ckpt
from train.clustering import usage
from train.data import batches, expand_masks
from train.head import UpsampleHead
from train.model import PixelCLIP, batch_loss, ema_update, make_teacher, set_trainable
from train.optim import lr_factor, rng_state, seed_everything, set_lr, set_rng_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSummary:
    out: str
    steps: int
    loss: float
    used_prompts: int  # prompts that received masks in the last step
    images_per_s: float
    seconds: float

    def line(self) -> str:
        return (f"{self.steps} steps, loss {self.loss:.4f}, {self.used_prompts} prompts used, "
                f"{self.images_per_s:.1f} img/s, {self.seconds:.0f}s → {self.out}/final.pt")


@dataclass
class Run:
    """Everything a step needs."""

    cfg: TrainParams
    net: torch.nn.Module  # PixelCLIP, DDP-wrapped when distributed
    core: PixelCLIP
    clip: torch.nn.Module
    teacher: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    stats: tuple
    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world: int = 1


def setup_distributed(device_pref: str) -> tuple[int, int, torch.device]:
    """Init the process group when launched by torchrun; → (rank, world, device). Under
    torchrun each rank takes the GPU of its ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_pref, "train.device")
    if device.type == "cuda":
        if world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


NORM_TYPES = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm,
              torch.nn.LocalResponseNorm, torch.nn.Embedding)


def build_optimizer(core: PixelCLIP, cfg: TrainParams) -> torch.optim.Optimizer:
    """AdamW with one lr per part: visual (×lr_visual_mult), prompts (×lr_prompt_mult), head.

    Weight decay applies to every trained parameter except those of normalisation layers and
    embedding tables, as the official optimiser (detectron2's norm and embedding decay of 0).
    """
    parts = [("visual", core.visual, cfg.lr * cfg.lr_visual_mult),
             ("prompts", core.prompts, cfg.lr * cfg.lr_prompt_mult),
             ("head", core.head, cfg.lr)]
    groups = []
    for name, module, lr in parts:
        decay, plain = [], []
        for sub in module.modules():
            for param in sub.parameters(recurse=False):
                if param.requires_grad:
                    (plain if isinstance(sub, NORM_TYPES) else decay).append(param)
        groups += [{"name": name, "params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd}
                   for ps, wd in ((decay, cfg.weight_decay), (plain, 0.0)) if ps]
    return torch.optim.AdamW(groups)


def build(cfg: TrainParams) -> Run:
    """Model, teacher, optimiser and (if launched so) the DDP wrapper."""
    rank, world, device = setup_distributed(cfg.device)
    seed_everything(cfg.init_seed)  # as the official code: the run's seed moves the data only
    bundle = load_clip(cfg.clip_model, cfg.clip_pretrained, device)
    clip = bundle.model
    clip.requires_grad_(False)
    set_trainable(clip.visual, cfg.trainable)
    vocab = read_vocab(cfg.prompt_vocab) if cfg.prompt_vocab else None
    prompts = PromptLearner(clip, bundle.tokenizer, cfg.num_prompts, cfg.prompt_length,
                            cfg.prompt_template, seed=cfg.init_seed, vocab=vocab).to(device)
    core = PixelCLIP(clip.visual, prompts, UpsampleHead(cfg.head_widths).to(device),
                     cfg.dense_mode)
    teacher = make_teacher(clip.visual)
    # train mode, as the official trainer puts the whole model, teacher included: it only
    # matters for towers with dropout or stochastic depth (ConvNeXt), none of the ViTs here
    core.train()
    teacher.train()
    net = core
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            core, device_ids=[device.index] if device.type == "cuda" else None)
    on_gpu = device.type == "cuda" and cfg.amp != "none"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if on_gpu else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return Run(cfg, net, core, clip, teacher, build_optimizer(core, cfg), scaler,
               (bundle.mean, bundle.std), device, amp_dtype, rank, world)


def train_step(run: Run, micro_batches: list[dict], step: int) -> dict:
    """One optimiser step over ``grad_accum`` micro-batches → logged metrics."""
    cfg = run.cfg
    set_lr(run.optimizer, lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.end_lr_factor))
    if step < cfg.visual_delay_steps:  # prompts and head find the clusters before CLIP moves
        for group in run.optimizer.param_groups:
            if group["name"] == "visual":
                group["lr"] = 0.0
    if cfg.use_momentum:
        ema_update(run.teacher, run.core.visual, cfg.momentum)  # teacher first, then use it
    run.optimizer.zero_grad(set_to_none=True)
    total, counts = torch.zeros((), device=run.device), torch.zeros(cfg.num_prompts,
                                                                    device=run.device)
    for i, batch in enumerate(micro_batches):
        batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
        if "toggles" in batch:  # compact masks from the loader (dense ones pass as they are)
            batch["masks"], batch["valid"] = expand_masks(batch, cfg.max_masks)
        last = i == len(micro_batches) - 1
        sync = nullcontext() if last or run.world == 1 else run.net.no_sync()
        autocast = (torch.autocast(run.device.type, dtype=run.amp_dtype)
                    if run.amp_dtype else nullcontext())
        with sync:
            with autocast:
                loss, labels = batch_loss(run.net, run.clip, run.teacher, batch, cfg, run.stats)
            run.scaler.scale(loss / len(micro_batches)).backward()
        total += loss.detach() / len(micro_batches)
        counts += usage(labels, cfg.num_prompts).to(counts.dtype)
    run.scaler.unscale_(run.optimizer)
    params = [p for g in run.optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.world > 1:
        dist.all_reduce(total)
        dist.all_reduce(counts)
        total /= run.world
    return {"loss": float(total), "used": int((counts > 0).sum()), "masks": int(counts.sum()),
            "max_share": float(counts.max() / counts.sum().clamp(min=1)),
            "grad_norm": float(grad_norm),
            **{f"lr_{g['name']}": g["lr"] for g in run.optimizer.param_groups}}


def state_of(run: Run, step: int) -> dict:
    """The checkpoint dict of the current state."""
    return {"model": run.core.state_dict(), "teacher": run.teacher.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
            "step": step, "config": to_dict(run.cfg), "rng": rng_state()}


def restore(run: Run, state: dict) -> int:
    """Load a checkpoint's state into ``run``; → the step to continue from."""
    run.core.load_state_dict(state["model"])
    run.teacher.load_state_dict(state["teacher"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    log.info("resumed at step %d", state["step"])
    return int(state["step"])


def segment_seed(seed: int, step: int, every: int) -> int:
    """Seed of the data stream that serves ``step`` (a new stream per checkpoint interval)."""
    return seed * 1_000_003 + step // max(1, every)


def run(cfg: TrainParams) -> TrainSummary:
    """Fine-tune CLIP with PixelCLIP for ``cfg.steps`` steps; export ``final.pt``."""
    from train.progress import LiveCurves, LogWriter, progress_bar

    start_time = time.time()
    resolve_device(cfg.device, "train.device")  # a config error before any data error
    urls = list_shards(cfg.shards)
    if not urls:
        raise FileNotFoundError(f"train.shards: no shards in {cfg.shards} (run the masks stage)")
    out = Path(cfg.out)
    state = ckpt.resume_state(out, cfg.resume, to_dict(cfg))
    r = build(cfg)
    if state is None and r.rank == 0:  # nothing is written before this
        ckpt.claim_run_folder(out, cfg.overwrite)
    accum = max(1, cfg.grad_accum)
    micro = cfg.batch_size // (r.world * accum)
    if micro < 1 or micro * r.world * accum != cfg.batch_size:
        raise ValueError(f"train.batch_size {cfg.batch_size} is not divisible by "
                         f"{r.world} ranks x {accum} accumulation steps")
    start = restore(r, state) if state is not None else 0
    writer = LogWriter(out / "log.jsonl", start, enabled=r.rank == 0)
    curves = LiveCurves(cfg.live, start, enabled=r.rank == 0)
    bar = progress_bar(cfg.steps, start, enabled=r.rank == 0)
    data, metrics, seen = None, {"loss": float("nan"), "used": 0}, 0
    for step in range(start, cfg.steps):
        if data is None or step % cfg.checkpoint_every == 0:
            data = batches(cfg, urls, micro, segment_seed(cfg.seed, step, cfg.checkpoint_every),
                           r.world)
        metrics = train_step(r, [next(data) for _ in range(accum)], step)
        seen += cfg.batch_size
        rate = seen / max(1e-9, time.time() - start_time)
        bar.update(metrics, rate)
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            record = {"step": step, **metrics, "images_per_s": round(rate, 2)}
            writer.write(record)
            curves.write(record)
        done = step + 1
        if r.rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            ckpt.save_checkpoint(out, done, state_of(r, done))
    bar.close()
    writer.close()
    curves.close()
    if r.rank == 0:
        ckpt.export(out, r.clip, r.core.prompts, cfg.clip_model, cfg.clip_pretrained)
        (out / "params.json").write_text(json.dumps(to_dict(cfg), indent=2))
    summary = TrainSummary(str(out), cfg.steps, metrics["loss"], metrics["used"],
                           seen / max(1e-9, time.time() - start_time), time.time() - start_time)
    if r.rank == 0:
        (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    if r.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
