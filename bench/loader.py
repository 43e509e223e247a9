"""Training-loader throughput on SA-1B-sized samples: samples/s per CPU core, this loader
against the full-decode path, in the same run.

    python bench/loader.py                       # params/real.yaml's views, 889x1333, 100 masks
    python bench/loader.py --masks 300 --samples 20
    python bench/loader.py --parts               # where a sample's time goes

Each sample is a JPEG of the size shards store under ``params/real.yaml`` (``masks.max_side``
1333: SA-1B's 1500x2250 seen as 889x1333) with ``--masks`` full-size masks of SA-1B-like sizes.
One process, one thread, CPU time (``time.process_time``), so other jobs on the machine do not
count. Both paths draw the same views from the same seed:

- ``loader``: what a training worker does (``train.data.prepare``): image decode, the
  official crop and colour views, every mask sampled at the view's grid from its run lengths.
- ``full decode``: the same image work, with masks decoded at their stored size by
  pycocotools and then resized, cropped and flipped (``train.data.reference_masks``), the
  path before this loader.

It checks that both give the same masks, prints samples/s per core for each and the ratio,
and the cost of :func:`train.data.expand_masks` (on the training device; here on the CPU).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import load_params  # noqa: E402
from shards import rle  # noqa: E402
from shards.reader import decode_image  # noqa: E402
from train import augment  # noqa: E402
from train.data import (  # noqa: E402
    collate,
    expand_masks,
    keep_mask,
    make_views,
    prepare,
    reference_masks,
    sample_masks,
)


def sa1b_like(rng: np.random.Generator, height: int, width: int, count: int) -> dict:
    """A smooth random photo as JPEG bytes and ``count`` blob-shaped masks, sizes log-uniform
    from 0.01 % to 30 % of the image (SA-1B's range), as COCO RLEs."""
    small = rng.integers(0, 256, (height // 32, width // 32, 3), dtype=np.uint8)
    photo = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    masks = np.zeros((count, height, width), np.uint8)
    for m in masks:
        area = height * width * 10 ** rng.uniform(-4, np.log10(0.3))
        axes = np.sqrt(area / np.pi) * np.exp(rng.normal(0, 0.4, 2))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(m, centre, (max(1, int(axes[0])), max(1, int(axes[1]))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return {"jpeg": jpeg.tobytes(), "rles": rle.encode(masks.astype(bool))}


def write_folder(folder: Path, samples: list[dict], height: int, width: int) -> None:
    """The samples as shards of 16, as the masks stage writes them."""
    from shards import schema
    from shards.writer import write_shard

    folder.mkdir(parents=True, exist_ok=True)
    gen = schema.Generator("sa1b-like", {}, "bench")
    for start in range(0, len(samples), 16):
        write_shard(folder / schema.shard_name("train", start // 16), [
            {"__key__": f"s{start + i:06d}", "jpg": s["jpeg"], schema.MASKS_EXT:
             schema.encode_record(schema.record_from_rles(s["rles"], height, width, "bench",
                                                          gen))}
            for i, s in enumerate(samples[start:start + 16])])
    print(f"wrote {len(samples)} samples to {folder}")


def run_loader(samples: list[dict], cfg, seed: int) -> tuple[float, list[dict]]:
    """CPU seconds of ``prepare`` (image decode included) over the samples, and its output."""
    rng = np.random.default_rng(seed)
    start = time.process_time()
    out = [prepare({"image": decode_image(s["jpeg"]), "rles": s["rles"]}, rng, cfg)
           for s in samples]
    return time.process_time() - start, out


def run_full_decode(samples: list[dict], cfg, seed: int) -> tuple[float, list[torch.Tensor]]:
    """The same views, with masks decoded at full size and resized, cropped, flipped."""
    rng = np.random.default_rng(seed)
    start = time.process_time()
    out = []
    for s in samples:
        image = decode_image(s["jpeg"])
        geom, views = make_views(image, rng, cfg)
        full = rle.decode(s["rles"], *image.shape[:2])
        out.append(reference_masks(full, geom, views["keep"], cfg.max_masks))
    return time.process_time() - start, out


PARTS = {  # the steps of ``train.data.prepare``, as functions the profiler times
    "JPEG decode": decode_image, "geometry": augment.draw_geometry,
    "crop and flip": augment.crop_view, "ColorAugSSD (shared view)": augment.color_aug_ssd,
    "strong view": augment.strong_view, "resize both views": augment.resize_view,
    "cutout and keep mask": keep_mask, "masks at the grid": sample_masks}


def run_parts(samples: list[dict], cfg, seed: int) -> dict[str, float]:
    """CPU seconds of each step of :func:`train.data.prepare` over the samples (the profiler's
    inclusive time of each step's function; 'other' is the rest of the loader's time)."""
    profile = cProfile.Profile(time.process_time)
    profile.runcall(run_loader, samples, cfg, seed)
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, _, own, inclusive, _)
    inclusive = {(path, name): row[3] for (path, _, name), row in stats.items()}
    spent = {label: inclusive.get((fn.__code__.co_filename, fn.__name__), 0.0)
             for label, fn in PARTS.items()}
    total = inclusive[(run_loader.__code__.co_filename, run_loader.__name__)]
    spent["other"] = total - sum(spent.values())
    return spent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/real.yaml")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--masks", type=int, default=100)
    parser.add_argument("--height", type=int, default=889)
    parser.add_argument("--width", type=int, default=1333)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-shards", default="",
                        help="instead: write this many-sample SA-1B-like shard folder here "
                             "(for timing train end to end), then exit")
    parser.add_argument("--parts", action="store_true",
                        help="instead: CPU ms per step of a sample, in the loader's order")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = load_params(Path(__file__).resolve().parents[1] / args.params).train
    rng = np.random.default_rng(args.seed)
    samples = [sa1b_like(rng, args.height, args.width, args.masks) for _ in range(args.samples)]
    if args.write_shards:
        write_folder(Path(args.write_shards), samples, args.height, args.width)
        return
    run_loader(samples[:2], cfg, args.seed)  # warm-up (imports, allocator)
    if args.parts:
        spent = run_parts(samples, cfg, args.seed)
        print("CPU ms per sample, under the profiler:")
        for name, seconds in spent.items():
            print(f"  {name:26s} {1e3 * seconds / len(samples):6.2f} ms")
        print(f"  {'total':26s} {1e3 * sum(spent.values()) / len(samples):6.2f} ms")
        return
    fast_s, prepared = run_loader(samples, cfg, args.seed)
    full_s, reference = run_full_decode(samples, cfg, args.seed)
    start = time.process_time()
    masks, valid = expand_masks(collate(prepared), cfg.max_masks)
    expand_s = time.process_time() - start
    same = all(torch.equal(m[v], r) for m, v, r in zip(masks, valid, reference, strict=True))
    n = len(samples)
    print(f"loader ({args.params}: {cfg.crop} crop {cfg.crop_size}, views {cfg.clip_resolution}²,"
          f" masks {cfg.mask_resolution}²; {args.height}x{args.width} JPEG, {args.masks} masks)")
    print(f"  loader:      {n / fast_s:7.1f} samples/s per core ({1e3 * fast_s / n:6.1f} ms)")
    print(f"  full decode: {n / full_s:7.1f} samples/s per core ({1e3 * full_s / n:6.1f} ms)")
    print(f"  ratio {full_s / fast_s:.2f}x, same masks: {same}; expand_masks on the CPU "
          f"{1e3 * expand_s / n:.1f} ms per sample (on the training device in real runs)")
    if not same:
        raise SystemExit("the loader's masks differ from the full-decode path")


if __name__ == "__main__":
    main()
