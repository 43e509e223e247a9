"""Evaluation throughput: images/s of inference (+ confusion-matrix update), and the cost of the
confusion-matrix update against a plain ``np.bincount`` on the same label maps.

    python bench/evaluate.py                                   # tiny default on this CPU
    python bench/evaluate.py --model ViT-B-16 --resolution 320 --device cuda --image-size 512
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
    bench_inference(args)
    bench_confusion(args)


if __name__ == "__main__":
    main()
