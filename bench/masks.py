"""Mask-generator throughput: images/s per generator, and our SAM / SAM 2.1 AMGs against
the stock ones.

    python bench/masks.py                                   # CPU: superpixel, DINO S/8, tiny SAM
    python bench/masks.py --device cuda --sam-model vit_h --points-per-side 32 \\
        --dino-model vit_base_patch8_224.dino --size 1024   # the GPU goal
    python bench/masks.py --device cuda --generators sam2 --sam2-model hiera_l --size 1024

SAM: one random-init model (seeded) is run by segment-anything's ``SamAutomaticMaskGenerator``
(the baseline, fp32, its default 64 points per batch) and by our ``FastAmg`` (encoder in
``--precision`` on a GPU, ``--fast-points-per-batch``) in the same process, on the same images,
with the same AMG settings. It prints both images/s, the ratio, and how well the masks agree:
for every mask of either set, the IoU of its best match in the other set; ``match`` is the mean
(1.0 = identical). Goal on a GPU: ratio ≥ 2 with match ≥ 0.99.

Random weights: with SAM's default thresholds a random model keeps no mask, which would make
the comparison empty. ``--keep-frac`` (default 0.25) therefore sets ``pred_iou_thresh`` to the
quantile of the model's own predicted IoUs on the first image that keeps that fraction, and
the stability offset/threshold to values that let such masks through. Pass ``--keep-frac 0`` to
use SAM's defaults (real checkpoints: ``--sam-checkpoint PATH``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import DinoParams, SamParams, SuperpixelParams  # noqa: E402
from pipeline.generators import Item  # noqa: E402
from pipeline.generators.dino import DinoGenerator  # noqa: E402
from pipeline.generators.sa1b import Sa1bIngest  # noqa: E402
from pipeline.generators.sam import FastAmg, build_random_sam, load_sam  # noqa: E402
from pipeline.generators.superpixel import superpixel_masks  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from shards import rle as rle_codec  # noqa: E402
from synthetic.world import render_scene  # noqa: E402

AMG_KNOBS = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
             "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
             "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--generators", default="sa1b,superpixel,dino,sam")
    parser.add_argument("--images", type=int, default=3, help="timed images per generator")
    parser.add_argument("--size", type=int, default=256, help="long side of the test images")
    parser.add_argument("--sam-model", default="tiny", help="tiny | vit_b | vit_l | vit_h")
    parser.add_argument("--sam-checkpoint", default="random")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--fast-points-per-batch", type=int, default=0,
                        help="ours; 0 = 256 on cuda, 64 on cpu (masks do not depend on it)")
    parser.add_argument("--precision", default="bf16", help="fp32 | fp16 | bf16 (GPU only)")
    parser.add_argument("--keep-frac", type=float, default=0.25)
    parser.add_argument("--sam2-model", default="hiera_t", help="hiera_t | s | b+ | l")
    parser.add_argument("--sam2-checkpoint", default="random")
    parser.add_argument("--dino-model", default="vit_small_patch8_224.dino")
    parser.add_argument("--dino-size", type=int, default=224)
    parser.add_argument("--sa1b-masks", type=int, default=100, help="masks per SA-1B sample")
    parser.add_argument("--max-side", type=int, default=1024, help="sa1b: stored long side")
    return parser.parse_args(argv)


def test_images(count: int, size: int) -> list[np.ndarray]:
    """Synthetic-world scenes rendered at 4:3 with long side ``size`` (deterministic)."""
    images = []
    for i in range(count + 1):  # +1 warm-up image
        scene = render_scene(np.random.default_rng([7, i]), 128).image
        images.append(cv2.resize(scene, (size, size * 3 // 4), interpolation=cv2.INTER_CUBIC))
    return images


def images_per_second(fn, images: list[np.ndarray], device: str) -> tuple[float, list]:
    """Run ``fn`` on the first image (warm-up), then time it over the rest."""
    fn(images[0])
    _sync(device)
    start = time.perf_counter()
    outputs = [fn(image) for image in images[1:]]
    _sync(device)
    return (len(images) - 1) / (time.perf_counter() - start), outputs


def bench_superpixel(images: list[np.ndarray], args: argparse.Namespace) -> None:
    params = SuperpixelParams()
    rate, outs = images_per_second(lambda im: superpixel_masks(im, params), images, "cpu")
    print(f"superpixel  {rate:8.2f} images/s  ({np.mean([len(o.rles) for o in outs]):.0f} masks)")


def bench_dino(images: list[np.ndarray], args: argparse.Namespace) -> None:
    params = DinoParams(model=args.dino_model, checkpoint="random", input_size=args.dino_size,
                        precision=args.precision)
    generator = DinoGenerator(params, args.device)
    rate, outs = images_per_second(generator.masks, images, args.device)
    print(f"dino        {rate:8.2f} images/s  ({args.dino_model} at {args.dino_size}, "
          f"{np.mean([len(o.rles) for o in outs]):.0f} masks)")


def bench_sa1b(images: list[np.ndarray], args: argparse.Namespace) -> None:
    """Ingest of SA-1B-style samples: a 2250x1500 JPEG and its JSON of full-size RLE masks
    (random ellipses), read, resized to ``--max-side`` and re-encoded, as the stage does; then
    the mask resize alone, ``rle.resize`` against decoding the whole stack first, and the RLE
    check alone, all masks of an image in one pass against one RLE at a time."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        items, all_rles = [], []
        for i, small in enumerate(images):
            rgb = cv2.resize(small, (2250, 1500), interpolation=cv2.INTER_CUBIC)
            path = Path(tmp) / f"sa_{i}.jpg"
            cv2.imwrite(str(path), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            stack = np.zeros((args.sa1b_masks, 1500, 2250), np.uint8)
            for mask in stack:
                centre = (int(rng.integers(0, 2250)), int(rng.integers(0, 1500)))
                axes = (int(rng.integers(20, 600)), int(rng.integers(20, 400)))
                cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            all_rles.append(rle_codec.encode(stack.astype(bool)))
            anns = [{"segmentation": r} for r in all_rles[-1]]
            path.with_suffix(".json").write_text(json.dumps({"annotations": anns}))
            items.append(Item(path.stem, str(path), path.name, str(path.with_suffix(".json"))))
        ingest = Sa1bIngest()
        by_path = {item.image: item for item in items}

        def run(image_path: str):
            return ingest(by_path[image_path], load_image(image_path, args.max_side))

        rate, outs = images_per_second(run, [item.image for item in items], "cpu")
    print(f"sa1b        {rate:8.2f} images/s  (2250x1500 JPEG + {args.sa1b_masks} RLE masks → "
          f"long side {args.max_side}, {np.mean([len(o.rles) for o in outs]):.0f} masks)")
    size = outs[0].rles[0]["size"]

    def stack_resize(rles: list[dict]) -> list[dict]:  # the baseline: the whole stack at once
        full = rle_codec.decode(rles, 1500, 2250)
        return rle_codec.encode(np.stack([cv2.resize(m.view(np.uint8), size[::-1],
                                                     interpolation=cv2.INTER_NEAREST) > 0
                                          for m in full]))

    ours, ours_out = images_per_second(lambda r: rle_codec.resize(r, (1500, 2250), size),
                                       all_rles, "cpu")
    base, base_out = images_per_second(stack_resize, all_rles, "cpu")
    print(f"sa1b masks  rle.resize {1e3 / ours:.0f} ms/image, decode-stack-resize-encode "
          f"{1e3 / base:.0f} ms/image, ratio {ours / base:.2f}x, equal: {ours_out == base_out}")

    def one_at_a_time(rles: list[dict]) -> list[int]:  # the baseline: parse each RLE alone
        return [int(rle_codec.run_lengths(r["counts"]).sum()) for r in rles]

    ours, _ = images_per_second(lambda r: rle_codec.check(r, 1500, 2250), all_rles, "cpu")
    base, _ = images_per_second(one_at_a_time, all_rles, "cpu")
    print(f"sa1b check  rle.check {1e3 / ours:.2f} ms/image, one RLE at a time "
          f"{1e3 / base:.2f} ms/image, ratio {ours / base:.2f}x")


def bench_sam(images: list[np.ndarray], args: argparse.Namespace) -> None:
    from segment_anything import SamAutomaticMaskGenerator

    params = SamParams(model_type=args.sam_model, checkpoint=args.sam_checkpoint,
                       points_per_side=args.points_per_side, precision=args.precision)
    model = (build_random_sam(args.sam_model) if args.sam_checkpoint == "random"
             else load_sam(params)).to(args.device).eval()
    if args.keep_frac > 0:
        params = calibrate(model, images[0], params, args.keep_frac)
    knobs = {k: getattr(params, k) for k in AMG_KNOBS}
    stock = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **knobs)
    batch = args.fast_points_per_batch or (256 if args.device.startswith("cuda") else 64)
    fast = FastAmg(model, dataclasses.replace(params, points_per_batch=batch))
    stock_rate, stock_out = images_per_second(stock.generate, images, args.device)
    fast_rate, fast_out = images_per_second(fast.generate, images, args.device)
    matches = [match_iou([a["segmentation"] for a in s], f.rles)
               for s, f in zip(stock_out, fast_out, strict=True)]
    counts = [(len(s), len(f.rles)) for s, f in zip(stock_out, fast_out, strict=True)]
    print(f"sam stock   {stock_rate:8.3f} images/s  ({args.sam_model}, {params.points_per_side}"
          f" points/side, fp32, {params.points_per_batch} points/batch)")
    print(f"sam ours    {fast_rate:8.3f} images/s  ({fast.encoder_dtype} encoder, "
          f"{batch} points/batch)")
    print(f"sam ratio   {fast_rate / stock_rate:8.2f}x   match IoU {min(matches):.4f} "
          f"(min over images), masks stock/ours {counts}")


def bench_sam2(images: list[np.ndarray], args: argparse.Namespace) -> None:
    """SAM 2.1: the stock SAM2AutomaticMaskGenerator (fp32) against ours, same model, same
    images and settings. Random weights keep masks only without the IoU and stability filters
    (as in the tests); real checkpoints run with the stock defaults."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from config import Sam2Params
    from pipeline.generators.sam2 import FastSam2Amg, amg_settings, load_sam2

    random = args.sam2_checkpoint == "random"
    params = Sam2Params(model=args.sam2_model, checkpoint=args.sam2_checkpoint,
                        points_per_side=args.points_per_side, precision=args.precision,
                        **({"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
                           if random else {}))
    device = torch.device(args.device)
    model = load_sam2(params, device)
    stock = SAM2AutomaticMaskGenerator(model, output_mode="coco_rle", **amg_settings(params))
    batch = args.fast_points_per_batch or (256 if args.device.startswith("cuda") else 64)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        args.precision] if device.type == "cuda" else torch.float32
    fast = FastSam2Amg(model, dataclasses.replace(params, points_per_batch=batch), dtype)
    stock_rate, stock_out = images_per_second(stock.generate, images, args.device)
    fast_rate, fast_out = images_per_second(fast.generate, images, args.device)
    matches = [match_iou([a["segmentation"] for a in s], [a["segmentation"] for a in f])
               for s, f in zip(stock_out, fast_out, strict=True)]
    counts = [(len(s), len(f)) for s, f in zip(stock_out, fast_out, strict=True)]
    print(f"sam2 stock  {stock_rate:8.3f} images/s  (sam2.1_{args.sam2_model}, "
          f"{params.points_per_side} points/side, fp32, {params.points_per_batch} points/batch)")
    print(f"sam2 ours   {fast_rate:8.3f} images/s  ({dtype} encoder, {batch} points/batch)")
    print(f"sam2 ratio  {fast_rate / stock_rate:8.2f}x   match IoU {min(matches):.4f} "
          f"(min over images), masks stock/ours {counts}")


def calibrate(model, rgb: np.ndarray, params: SamParams, keep: float) -> SamParams:
    """Thresholds under which a random model keeps about ``keep`` of its masks (see top)."""
    amg = FastAmg(model, params)
    with torch.inference_mode():
        features, input_size = amg.embed(rgb)
        points = amg.point_grids[0] * np.array(rgb.shape[:2])[None, ::-1]
        low_res, iou = amg._decode(features, points[:: max(1, len(points) // 256)],
                                   rgb.shape[:2])
    spread = float(low_res.float().std())
    return dataclasses.replace(
        params, pred_iou_thresh=float(torch.quantile(iou.float().flatten(), 1 - keep)),
        stability_score_offset=spread / 4, stability_score_thresh=0.5)


def match_iou(stock: list[dict], ours: list[dict]) -> float:
    """Mean over the masks of both sets of each mask's best IoU in the other set."""
    if not stock and not ours:
        return 1.0
    if not stock or not ours:
        return 0.0
    ious = rle_codec.iou(ours, stock)
    return float(np.concatenate([ious.max(axis=0), ious.max(axis=1)]).mean())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    images = test_images(args.images, args.size)
    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else f"cpu x{torch.get_num_threads()} threads"
    print(f"device {name}; {args.images} images of {images[0].shape[1]}x{images[0].shape[0]}")
    benches = {"sa1b": bench_sa1b, "superpixel": bench_superpixel, "dino": bench_dino,
               "sam": bench_sam, "sam2": bench_sam2}
    for generator in args.generators.split(","):
        benches[generator](images, args)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
