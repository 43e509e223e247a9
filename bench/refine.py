"""Refinements at real image sizes: CPU time and peak memory of ``evaluate.refine`` (PAMR, mask
painting) against the straightforward whole-tensor forms, each case in a fresh process.

    python bench/refine.py                      # COCO-Stuff, Cityscapes and SA-1B sizes
    python bench/refine.py --device cuda

Baselines: PAMR as the peers ship it (every 3×3 neighbourhood of every dilation unfolded at
once, ``(C, 9 n, H, W)`` per step); mask painting with one ``einsum`` over a float copy of all
masks (4 bytes per mask pixel).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (name, height, width, classes, masks per image); PAMR runs on the benchmarks' sizes only
SIZES = [("COCO-Stuff", 480, 640, 171, 100), ("Cityscapes", 1024, 2048, 19, 150),
         ("SA-1B", 1500, 2250, 171, 300)]
PAMR_SIZES = ("COCO-Stuff", "Cityscapes")


def unfolded_pamr(image, logits, steps: int, dilations):
    import torch
    import torch.nn.functional as F

    def around(x):
        c, h, w = x.shape
        return torch.cat([F.unfold(F.pad(x[None], (d,) * 4, mode="replicate"), 3, dilation=d)
                          .view(c, 9, h, w) for d in dilations], dim=1)

    views = around(image)
    ring = [i for i in range(views.shape[1]) if i % 9 != 4]
    affinity = -(views[:, ring] - image[:, None]).abs() / (1e-8 + 0.1 * views.std(1, keepdim=True))
    weights = affinity.mean(dim=0).softmax(dim=0)
    for _ in range(steps):
        logits = (around(logits)[:, ring] * weights).sum(dim=1)
    return logits


def einsum_paint(logits, masks):
    import torch

    stack = torch.from_numpy(masks)
    area = stack.flatten(1).sum(1)
    named = (torch.einsum("chw,nhw->nc", logits, stack.to(logits.dtype))
             / area.clamp(min=1)[:, None]).argmax(dim=1)
    labels = logits.argmax(dim=0)
    for i in torch.argsort(area, descending=True, stable=True).tolist():
        labels[stack[i]] = named[i]
    return labels


def _case(kind: str, impl: str, size: tuple, device: str, queue) -> None:
    import numpy as np
    import torch

    from evaluate.refine import paint_masks, pamr

    torch.manual_seed(0)
    _, h, w, classes, n_masks = size
    dev = torch.device(device)
    logits = torch.randn(classes, h, w, device=dev)
    if kind == "pamr":
        image = torch.rand(3, h, w, device=dev) * 255
        fn = (lambda: pamr(image, logits, 10, (8, 16))) if impl == "ours" else \
            (lambda: unfolded_pamr(image, logits, 10, (8, 16)))
    else:
        rng = np.random.default_rng(0)
        masks = np.zeros((n_masks, h, w), bool)
        for m in masks:  # boxes from 1% to 30% of the image's side
            mh, mw = (int(rng.integers(s // 100 + 1, s * 3 // 10)) for s in (h, w))
            y, x = int(rng.integers(0, h - mh)), int(rng.integers(0, w - mw))
            m[y:y + mh, x:x + mw] = True
        fn = (lambda: paint_masks(logits, masks)) if impl == "ours" else \
            (lambda: einsum_paint(logits, masks))
    if dev.type == "cuda":
        fn()  # warm-up: the allocator's pool and the kernels' first launch
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        queue.put((time.perf_counter() - start, torch.cuda.max_memory_allocated() - base))
        return
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    fn()
    seconds = time.process_time() - start
    queue.put((seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024))


def measure(kind: str, impl: str, size: tuple, device: str) -> tuple[float, float]:
    """(seconds, peak bytes above the inputs) of one call in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(kind, impl, size, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", nargs="+", default=[s[0] for s in SIZES],
                   choices=[s[0] for s in SIZES])
    args = p.parse_args(argv)
    clock = "GPU seconds" if args.device.startswith("cuda") else "CPU seconds"
    print(f"| case | size | {clock}: ours / baseline | ratio | peak GB: ours / baseline |")
    print("|---|---|---|---|---|")
    for size in (s for s in SIZES if s[0] in args.sizes):
        name, h, w, classes, n_masks = size
        cases = [("pamr", f"PAMR, {classes} classes")] if name in PAMR_SIZES else []
        for kind, what in cases + [("paint", f"paint {n_masks} masks, {classes} classes")]:
            ours, base = (measure(kind, impl, size, args.device) for impl in ("ours", "baseline"))
            print(f"| {what} | {name} {h}×{w} | {ours[0]:.2f} / {base[0]:.2f} | "
                  f"{base[0] / ours[0]:.1f}× | {ours[1] / 1e9:.2f} / {base[1] / 1e9:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
