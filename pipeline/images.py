"""Loading any image file into RGB uint8, with a reason when it cannot be used.

Every failure is a :class:`BadInput` whose message becomes the ``reason`` column of
``rejects.parquet``: empty, unreadable, not an image, corrupt or truncated, absurd size.
"""

from __future__ import annotations

import errno
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
SIDECAR_SUFFIXES = (".json",)  # <stem>.json next to <stem>.<image>: annotations, not inputs
_ORIENTATION = 0x0112  # EXIF tag


class BadInput(ValueError):
    """An input that is recorded in the rejects list instead of stopping the stage."""


@dataclass(frozen=True)
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8, EXIF orientation applied, at most max_side
    data: bytes  # bytes to store in the shard
    ext: str  # "jpg" | "png"
    source_size: tuple[int, int]  # (H, W) of the file before any resize, as shown (EXIF)
    orientation: int = 1  # the file's EXIF orientation (2-8: its pixels are turned to show it)


def list_inputs(root: str | Path) -> list[Path]:
    """Every candidate input under ``root`` (recursive, sorted, folder links followed): image
    files and any other non-hidden file, except ``<stem>.json`` sidecars of an image in the
    same folder.

    Non-image files, broken links and links that loop are listed too, so that the stage
    records them as rejects with a reason.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: input folder not found")
    files, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        here = Path(folder)
        if _hidden(here, root):
            subfolders[:] = []
            continue
        real = os.path.realpath(folder)
        if real in seen:  # a link back to a folder already listed: a loop, or a second path
            files.append(here)
            subfolders[:] = []
            continue
        seen.add(real)
        files += [here / n for n in names if not n.startswith(".")]
    files.sort()
    image_stems = {p.with_suffix("") for p in files if is_image_name(p)}
    return [p for p in files
            if not (p.suffix.lower() in SIDECAR_SUFFIXES and p.with_suffix("") in image_stems)]


def is_image_name(path: str | Path) -> bool:
    """Whether a file name has one of the image suffixes this stage reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | Path, max_side: int = 0, max_pixels: int = 100_000_000,
               min_side: int = 1) -> LoadedImage:
    """Read an image as RGB uint8, honouring EXIF orientation, optionally resized so its long
    side is at most ``max_side``; raise :class:`BadInput` with a reason when it is unusable.

    Grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are converted.
    JPEG/PNG files that need no change are stored as their original bytes.
    """
    path = Path(path)
    if path.is_dir():
        raise BadInput("a folder link that leads back to a folder already read (not followed)")
    if path.is_symlink() and not path.exists():
        try:
            path.stat()
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
            raise BadInput("symbolic link loop" if loop else "broken symbolic link") from None
    if not is_image_name(path):
        raise BadInput(f"not an image file (suffix '{path.suffix}')")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"unreadable file ({exc.strerror})") from None
    if not raw:
        raise BadInput("empty file")
    img, fmt, rgb, orientation = _decode(raw, max_pixels, min_side)
    source_size = (int(rgb.shape[0]), int(rgb.shape[1]))
    resized = fit_long_side(rgb, max_side)
    ext = "jpg" if fmt == "JPEG" else "png"
    if resized is rgb and orientation == 1 and fmt in ("JPEG", "PNG") and img.mode == "RGB":
        return LoadedImage(rgb, raw, ext, source_size)
    return LoadedImage(resized, encode_image(resized, ext), ext, source_size, orientation)


def _decode(raw: bytes, max_pixels: int, min_side: int) -> tuple[Image.Image, str, np.ndarray,
                                                                 int]:
    """Bytes → (PIL image, format, RGB array as shown, EXIF orientation 1-8); checks the size
    from the header before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = _open_unchecked(raw)
            width, height = img.size
            if width * height > max_pixels or min(width, height) < max(1, min_side):
                raise BadInput(f"absurd size {width}x{height}")
            img.load()
            fmt = img.format or ""
            orientation = img.getexif().get(_ORIENTATION, 1)
            orientation = orientation if orientation in range(2, 9) else 1
            oriented = ImageOps.exif_transpose(img) if orientation != 1 else img
            return img, fmt, _to_rgb(oriented), orientation
    except BadInput:
        raise
    except UnidentifiedImageError:
        raise BadInput("not an image or unsupported format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInput(f"corrupt or truncated image ({_short(exc)})") from None


def _open_unchecked(raw: bytes) -> Image.Image:
    """``Image.open`` without PIL's own pixel limit: ``max_pixels`` is checked by the caller."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(io.BytesIO(raw))
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def encode_image(rgb: np.ndarray, ext: str) -> bytes:
    """RGB uint8 → JPEG (quality 95) or PNG bytes."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else []
    ok, buf = cv2.imencode(f".{ext}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise BadInput(f"could not encode as {ext}")
    return buf.tobytes()


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        gray = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def fit_long_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Area-resize so the long side is at most ``max_side`` (0 = unchanged); same array if fits."""
    height, width = rgb.shape[:2]
    if max_side <= 0 or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) <= 120 else text[:117] + "..."
