"""Loading any image file into RGB uint8, with a reason when it cannot be used."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


class BadInput(ValueError):
    """An input that is recorded in the rejects list instead of stopping the stage."""


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8, EXIF orientation applied, at most max_side
    data: bytes  # bytes to store in the shard
    ext: str  # "jpg" | "png"
    source_size: tuple[int, int]  # (H, W) of the file before any resize


def list_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive), sorted for a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: input folder not found")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(path: str | Path, max_side: int = 0, max_pixels: int = 100_000_000) -> LoadedImage:
    """Read an image as RGB, honouring EXIF orientation; raise :class:`BadInput` with a reason."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"unreadable file ({exc.strerror})") from None
    if not raw:
        raise BadInput("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            width, height = img.size
            if width * height > max_pixels or min(width, height) < 1:
                raise BadInput(f"absurd size {width}x{height}")
            img.load()
            fmt = img.format
            oriented = ImageOps.exif_transpose(img)
            rgb = _to_rgb(oriented)
    except BadInput:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInput("not an image or unsupported format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"corrupt or truncated image ({exc})") from None
    source_size = rgb.shape[:2]
    resized = _fit(rgb, max_side)
    if resized is rgb and oriented is img and fmt in ("JPEG", "PNG") and img.mode == "RGB":
        return LoadedImage(rgb, raw, "jpg" if fmt == "JPEG" else "png", source_size)
    ext = "jpg" if fmt == "JPEG" else "png"
    return LoadedImage(resized, encode_image(resized, ext), ext, source_size)


def encode_image(rgb: np.ndarray, ext: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else []
    ok, buf = cv2.imencode(f".{ext}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise BadInput(f"could not encode as {ext}")
    return buf.tobytes()


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _fit(rgb: np.ndarray, max_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max_side <= 0 or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of boolean masks ``(N, h, w)`` to ``(N, height, width)``."""
    if masks.shape[1:] == (height, width):
        return masks
    out = np.empty((len(masks), height, width), dtype=bool)
    for i, m in enumerate(masks):
        out[i] = cv2.resize(m.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return out
