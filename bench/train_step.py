"""Benchmark one PixelCLIP training step, and vectorised vs naive mask pooling.

    python bench/train_step.py                      # tiny default on this CPU
    python bench/train_step.py --model ViT-B-16 --resolution 320 --mask-resolution 256 \\
        --batch 48 --masks 100 --precision bf16 --device cuda   # the paper's setting, on a GPU

Prints images/s and peak memory per step (CUDA: max allocated; CPU: process peak RSS), then
the time of ``mask_pool`` against a per-mask Python loop on the same inputs, and their ratio,
and the upsampling head's forward + backward in its channels-last layout against the default
contiguous layout.
Batches are random (images and rectangular masks), so no data is needed; weights are random.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from config import TrainParams  # noqa: E402
from models.dense import grid_size  # noqa: E402
from train.clustering import mask_pool, mask_pool_naive  # noqa: E402
from train.head import UpsampleHead  # noqa: E402
from train.loop import build, train_step  # noqa: E402


def random_batch(batch: int, res: int, mres: int, masks: int, gen: torch.Generator) -> dict:
    """Random images and ``masks`` random rectangles per image at mask resolution."""
    images = torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8, generator=gen)
    m = torch.zeros(batch, masks, mres, mres, dtype=torch.bool)
    corners = torch.randint(0, mres // 2, (batch, masks, 2), generator=gen)
    sizes = torch.randint(2, mres // 2 + 1, (batch, masks, 2), generator=gen)
    for b in range(batch):
        for i in range(masks):
            (y, x), (h, w) = corners[b, i].tolist(), sizes[b, i].tolist()
            m[b, i, y:y + h, x:x + w] = True
    return {"teacher": images, "student": images, "masks": m,
            "valid": torch.ones(batch, masks, dtype=torch.bool)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_steps(args: argparse.Namespace) -> tuple[int, int, torch.device]:
    """Time training steps; → the student's feature grid side, feature width and device."""
    mres = args.mask_resolution or args.resolution
    cfg = TrainParams(clip_model=args.model, clip_pretrained=args.pretrained,
                      clip_resolution=args.resolution, mask_resolution=mres,
                      batch_size=args.batch, num_prompts=args.prompts, device=args.device,
                      amp={"fp32": "none"}.get(args.precision, args.precision),
                      head_widths=tuple(args.head_widths), steps=args.steps + 1,
                      prompt_vocab="")
    run = build(cfg)
    gen = torch.Generator().manual_seed(0)
    batch = random_batch(args.batch, args.resolution, mres, args.masks, gen)
    train_step(run, [batch], 0)  # warm-up
    if run.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(run.device)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        metrics = train_step(run, [batch], step)
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / args.steps
    print(f"train step: {args.model} @ {args.resolution}px, masks @ {mres}px, batch "
          f"{args.batch}, k {args.prompts}, {args.precision} on {run.device}: "
          f"{per_step:.3f} s/step, {args.batch / per_step:.1f} images/s, peak memory "
          f"{peak_memory_mb(run.device):.0f} MiB, loss {metrics['loss']:.4f}")
    return grid_size(run.core.visual, args.resolution), run.core.visual.output_dim, run.device


def timed(fn: Callable[[], torch.Tensor], repeats: int,
          device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds per call of ``fn`` over ``repeats`` calls after one warm-up, and its last output."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, out


def bench_pooling(args: argparse.Namespace, grid: int, dim: int,
                  device: torch.device) -> None:
    mres = args.mask_resolution or args.resolution
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(args.batch, dim, grid, grid, generator=gen).to(device)
    masks = random_batch(args.batch, 8, mres, args.masks, gen)["masks"].to(device)
    timings, outs = {}, {}
    for name, fn in (("vectorised", mask_pool), ("naive loop", mask_pool_naive)):
        timings[name], outs[name] = timed(lambda fn=fn: fn(feats, masks), args.pool_repeats,
                                          device)
    same = torch.allclose(outs["vectorised"], outs["naive loop"], atol=1e-4)
    print(f"mask pooling ({args.batch} images x {args.masks} masks @ {mres}px): vectorised "
          f"{1e3 * timings['vectorised']:.2f} ms, naive loop {1e3 * timings['naive loop']:.2f} "
          f"ms, ratio {timings['naive loop'] / timings['vectorised']:.1f}x, equal: {same}")


def bench_head(args: argparse.Namespace, grid: int, device: torch.device) -> None:
    """Channels-last against contiguous, under the precision the training step uses."""
    maps = torch.randn(args.batch * args.prompts, 1, grid, grid, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    on_gpu = device.type == "cuda"
    timings, outs = {}, {}
    for layout in ("channels-last", "contiguous"):
        torch.manual_seed(0)
        head = UpsampleHead(tuple(args.head_widths)).to(device)
        if layout == "contiguous":  # nn.Module's default layout, input left as it is
            head = head.to(memory_format=torch.contiguous_format).layers

        def step(head=head) -> torch.Tensor:
            with torch.autocast(device.type, dtype=dtype, enabled=on_gpu and dtype is not None):
                out = head(maps)
            out.float().square().mean().backward()
            return out.float()

        timings[layout], outs[layout] = timed(step, args.pool_repeats, device)
    # cuDNN picks other kernels per layout, in TF32 or bf16: equal to that precision only
    tol = 1e-5 if not on_gpu else 2e-2
    same = torch.allclose(outs["channels-last"], outs["contiguous"], atol=tol, rtol=tol)
    precision = args.precision if on_gpu else "fp32"
    print(f"head ({args.batch}x{args.prompts} maps @ {grid}², widths {args.head_widths}, "
          f"{precision}) forward + backward: channels-last "
          f"{1e3 * timings['channels-last']:.0f} ms, contiguous "
          f"{1e3 * timings['contiguous']:.0f} ms, ratio "
          f"{timings['contiguous'] / timings['channels-last']:.2f}x, equal (atol {tol}): {same}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="TinyCLIP-ViT-8")
    p.add_argument("--pretrained", default="", help="tag or checkpoint (default: random)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--mask-resolution", type=int, default=0, help="0 = resolution")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--masks", type=int, default=32, help="masks per image")
    p.add_argument("--head-widths", type=int, nargs=3, default=[64, 64, 32])
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--pool-repeats", type=int, default=5)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    grid, dim, device = bench_steps(args)
    bench_pooling(args, grid, dim, device)
    bench_head(args, grid, device)


if __name__ == "__main__":
    main()
