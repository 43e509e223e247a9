"""Evaluation throughput: images/s of inference (+ confusion-matrix update), the cost of the
confusion-matrix update against a plain ``np.bincount`` on the same label maps, and with
``--options`` the images/s of every inference option against the plain path in the same run.

    python bench/evaluate.py                                   # tiny default on this CPU
    python bench/evaluate.py --model ViT-B-16 --resolution 320 --device cuda --image-size 512
    python bench/evaluate.py --options --images 16             # dense modes, PAMR, masks, sclip
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="TinyCLIP-ViT-8")
    p.add_argument("--pretrained", default="", help="tag or path; '' = random init")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--feature-size", type=int, default=64)
    p.add_argument("--sliding-window", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--images", type=int, default=64, help="timed images")
    p.add_argument("--image-size", type=int, default=128, help="side of the (random) images")
    p.add_argument("--classes", type=int, default=18)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cm-size", type=int, default=512, help="label side for the cm benchmark")
    p.add_argument("--cm-classes", type=int, default=150)
    p.add_argument("--cm-reps", type=int, default=20)
    p.add_argument("--options", action="store_true",
                   help="time each option of the options table against the plain path")
    p.add_argument("--masks", type=int, default=64, help="masks per image for the masks option")
    return p.parse_args(argv)


def bench_inference(args: argparse.Namespace) -> None:
    import torch

    from config import resolve_device
    from evaluate.inference import InferenceOptions, predict, text_classifier
    from evaluate.metrics import confusion_matrix
    from models.clip import load_clip

    torch.manual_seed(0)
    device = resolve_device(args.device, "--device")
    bundle = load_clip(args.model, args.pretrained, device, key="--pretrained")
    text = text_classifier(bundle, [f"class {i}" for i in range(args.classes)]).to(device)
    opts = InferenceOptions(args.resolution, args.feature_size, args.sliding_window)
    rng = np.random.default_rng(0)
    size = (args.image_size, args.image_size)
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(args.batch_size)]
    truth = rng.integers(0, args.classes, size).astype(np.uint8)
    predict(bundle, text, images, opts, device)  # warm-up
    batches = max(1, args.images // args.batch_size)
    infer = step = 0.0
    for _ in range(batches):
        start = time.perf_counter()
        preds = predict(bundle, text, images, opts, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        mid = time.perf_counter()
        for pred in preds:
            confusion_matrix(pred, truth, args.classes)
        infer += mid - start
        step += time.perf_counter() - start
    n = batches * args.batch_size
    mode = "sliding" if args.sliding_window else "whole"
    print(f"device {device} ({torch.get_num_threads()} threads), {args.model} "
          f"pretrained={args.pretrained or 'random'}, resolution {args.resolution} ({mode}), "
          f"{args.image_size}px images, {args.classes} classes, batch {args.batch_size}")
    print(f"inference: {n / infer:.1f} images/s; with confusion-matrix update: "
          f"{n / step:.1f} images/s ({n} images)")


def bench_options(args: argparse.Namespace) -> None:
    """images/s of each option (dense mode, PAMR, mask-guided painting, the sclip protocol)
    and its ratio against the plain path (this ``--resolution``, ``maskclip``, no masks)."""
    import dataclasses

    import torch

    from config import EvalOption, EvaluateParams, resolve_device
    from evaluate.inference import InferenceOptions, options_for, predict, text_classifier
    from models.clip import load_clip

    torch.manual_seed(0)
    device = resolve_device(args.device, "--device")
    bundle = load_clip(args.model, args.pretrained, device, key="--pretrained")
    rng = np.random.default_rng(0)
    size = (args.image_size, args.image_size)
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(args.batch_size)]
    masks = [random_masks(rng, size, args.masks) for _ in images]
    plain = InferenceOptions(args.resolution, args.feature_size, dense_mode="maskclip")
    cfg = EvaluateParams(resolution=args.resolution, feature_size=args.feature_size)
    rows = {"plain (maskclip)": (plain, None)}
    for mode in ("pixelclip", "clearclip", "sclip", "naclip"):
        rows[f"dense_mode {mode}"] = (dataclasses.replace(plain, dense_mode=mode), None)
    rows["pamr"] = (dataclasses.replace(plain, pamr_steps=cfg.pamr_steps), None)
    rows[f"masks ({args.masks} per image)"] = (plain, masks)
    for protocol in ("sclip", "clearclip"):  # naclip's geometry is sclip's off VOC-20
        option = EvalOption(protocol, "maskclip", protocol)
        rows[f"protocol {protocol}"] = (options_for(cfg, option), None)
    texts = {t: text_classifier(bundle, [f"class {i}" for i in range(args.classes)], t)
             .to(device) for t in {opts.templates for opts, _ in rows.values()}}
    # CPU time on the CPU (other jobs on the machine do not count), wall time on a GPU; every
    # row twice, alternating, the better of the two kept
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    batches = max(1, args.images // args.batch_size)
    rates = dict.fromkeys(rows, 0.0)
    for _ in range(2):
        for name, (opts, mask_list) in rows.items():
            text = texts[opts.templates]
            predict(bundle, text, images, opts, device, mask_list)  # warm-up
            start = clock()
            for _ in range(batches):
                predict(bundle, text, images, opts, device, mask_list)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates[name] = max(rates[name], batches * args.batch_size / (clock() - start))
    unit = "images/s" if device.type == "cuda" else "images/s of CPU time"
    print(f"options: {args.model} on {device} ({torch.get_num_threads()} threads), "
          f"{args.image_size}px images, batch {args.batch_size}, {unit}, ratio against plain")
    base = rates["plain (maskclip)"]
    for name, rate in rates.items():
        print(f"  {name:24s} {rate:8.2f}  ratio {rate / base:.2f}")


def random_masks(rng: np.random.Generator, size: tuple[int, int], count: int) -> np.ndarray:
    """``count`` random rectangles ``(count, H, W)`` bool, a tenth to a half of each side."""
    h, w = size
    out = np.zeros((count, h, w), bool)
    for m in out:
        mh, mw = int(rng.integers(h // 10, h // 2 + 1)), int(rng.integers(w // 10, w // 2 + 1))
        y, x = int(rng.integers(0, h - mh + 1)), int(rng.integers(0, w - mw + 1))
        m[y:y + mh, x:x + mw] = True
    return out


def bench_confusion(args: argparse.Namespace) -> None:
    from evaluate.metrics import confusion_matrix

    n, rng = args.cm_classes, np.random.default_rng(1)
    shape = (args.cm_size, args.cm_size)
    gt = rng.integers(0, n, shape).astype(np.uint8)
    gt[rng.random(shape) < 0.1] = 255
    pred = rng.integers(0, n, shape).astype(np.uint8)

    def plain() -> np.ndarray:  # no ignore handling, no checks: the lower bound
        return np.bincount(gt.astype(np.int64).ravel() * n + pred.ravel(), minlength=n * 256)

    ours = _best(lambda: confusion_matrix(pred, gt, n), args.cm_reps)
    base = _best(plain, args.cm_reps)
    print(f"confusion-matrix update ({shape[0]}x{shape[1]}, {n} classes): {ours * 1e3:.2f} ms "
          f"vs plain np.bincount {base * 1e3:.2f} ms, ratio {ours / base:.2f}")


def _best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.options:
        bench_options(args)
        return
    bench_inference(args)
    bench_confusion(args)


if __name__ == "__main__":
    main()
