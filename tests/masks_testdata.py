"""Tiny image folders for the masks-stage tests (generated, deterministic, a few KB each)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from config import DinoParams, MasksParams, Sam2Params, SamParams, SuperpixelParams

# Random weights give near-flat logits: thresholds low enough that masks survive, box NMS off
# (random masks are scattered, so their boxes all cover the image).
TINY_SAM = SamParams(model_type="tiny", checkpoint="random", points_per_side=4,
                     pred_iou_thresh=0.05, stability_score_thresh=0.3,
                     stability_score_offset=0.02, box_nms_thresh=1.0, precision="fp32")
TINY_DINO = DinoParams(model="vit_small_patch8_224.dino", checkpoint="random", input_size=64,
                       clusters=6, min_area_frac=0.01, kmeans_iters=10, precision="fp32")
TINY_SAM2 = Sam2Params(model="hiera_t", checkpoint="random", points_per_side=4,
                       points_per_batch=8, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                       box_nms_thresh=0.7)


def scene(seed: int, height: int = 72, width: int = 96) -> np.ndarray:
    """An RGB uint8 picture of a few flat shapes on a two-tone background."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[: height // 2] = rng.integers(0, 256, 3)
    img[height // 2:] = rng.integers(0, 256, 3)
    for _ in range(3):
        color = [int(c) for c in rng.integers(0, 256, 3)]
        center = (int(rng.integers(10, width - 10)), int(rng.integers(10, height - 10)))
        cv2.circle(img, center, int(rng.integers(6, 18)), color, -1)
    return img


def write_images(folder: Path, count: int, nested: bool = True) -> list[Path]:
    """``count`` small PNG/JPEG scenes, every third one in a nested sub-folder."""
    paths = []
    for i in range(count):
        sub = folder / "sub" / "deeper" if nested and i % 3 == 2 else folder
        sub.mkdir(parents=True, exist_ok=True)
        ext = "jpg" if i % 2 else "png"
        path = sub / f"img_{i:03d}.{ext}"
        Image.fromarray(scene(i)).save(path, quality=95)
        paths.append(path)
    return paths


def write_odd_but_valid(folder: Path) -> dict[str, tuple[int, int]]:
    """Images that must load: grayscale, RGBA, 16-bit, WebP, EXIF-rotated; name → (H, W)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = scene(7, 40, 60)
    Image.fromarray(rgb).convert("L").save(folder / "gray.png")
    rgba = Image.fromarray(rgb).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    deep = (rgb[..., 0].astype(np.uint16) * 257)
    Image.fromarray(deep).save(folder / "sixteen.png")
    Image.fromarray(rgb).save(folder / "photo.webp")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif.tobytes())
    sizes = {name: (40, 60) for name in ("gray.png", "rgba.png", "sixteen.png", "photo.webp")}
    sizes["rotated.jpg"] = (60, 40)
    return sizes


def write_bad_files(folder: Path) -> dict[str, str]:
    """One file per kind of bad input; name → a word its reject reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.fromarray(scene(3, 120, 160)).save(good, format="JPEG", quality=95)
    jpeg = good.getvalue()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "text.png").write_text("this is not a picture\n")
    (folder / "notes.txt").write_text("a stray file\n")
    (folder / "corrupt.png").write_bytes(_corrupt_png())
    (folder / "huge.png").write_bytes(_png_header(200_000, 200_000))
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(folder / "tiny.png")
    return {"empty.jpg": "empty", "truncated.jpg": "truncated", "text.png": "not an image",
            "notes.txt": "not an image", "corrupt.png": "corrupt", "huge.png": "absurd",
            "tiny.png": "absurd"}


def masks_params(input_dir: Path, out: Path, **overrides) -> MasksParams:
    """Params for a fast superpixel run over ``input_dir``."""
    base = dict(generator="superpixel", input=str(input_dir), out=str(out), shard_size=2,
                device="cpu", superpixel=SuperpixelParams(levels=2, work_side=128))
    base.update(overrides)
    return MasksParams(**base)


def _corrupt_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(scene(5, 64, 64)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 8
    data[start:start + 40] = bytes(range(40))  # garbage inside the compressed stream
    return bytes(data)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixels are never there)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
