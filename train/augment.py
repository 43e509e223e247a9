"""Training views: where the crop comes from (geometry) and what colour does to it.

A view is drawn once per sample and applied to the image and, as nearest-neighbour sample
positions, to the masks, so both stay aligned without ever resizing a full-size mask. Two
geometries (``train.crop``): ``random_resized`` (a random box of ``crop_scale`` of the area,
aspect 3:4-4:3, the embedded default) and ``official`` (the official SA-1B mapper: short side
resized to ``resize_short`` with the long side at most ``resize_max``, then a random
``crop_size``² crop). Colour follows the official mapper: ColorAugSSD on the shared (teacher)
view, then the student's strong view; docs/method.md lists what is official and what is not.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

from config import TrainParams


@dataclass(frozen=True)
class Geometry:
    """A crop of the image after an optional resize, then an optional horizontal flip.

    ``size`` is the (resized) image the crop box ``(y0, x0, h, w)`` refers to; ``source`` is the
    stored image's size. Masks are sampled from the stored image by nearest neighbour.
    """

    source: tuple[int, int]
    size: tuple[int, int]
    box: tuple[int, int, int, int]
    flip: bool

    def mask_indices(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored-image row and column of every pixel of the ``resolution``² mask view.

        The view is the crop, flipped, then resized with ``F.interpolate(mode="nearest")``;
        a resized pixel comes from the stored pixel under its centre (PIL's nearest resize, as
        detectron2 resizes masks).
        """
        y0, x0, h, w = self.box
        rows = y0 + nearest_index(resolution, h)
        cols = nearest_index(resolution, w)
        cols = x0 + (w - 1 - cols if self.flip else cols)
        return (_centre_source(rows, self.size[0], self.source[0]),
                _centre_source(cols, self.size[1], self.source[1]))

    def view_indices(self, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """Row and column in the (flipped) crop view of every pixel of the mask view."""
        _, _, h, w = self.box
        return nearest_index(resolution, h), nearest_index(resolution, w)


@functools.lru_cache(maxsize=64)
def nearest_index(out_size: int, in_size: int) -> np.ndarray:
    """Input index of each output index of a 1-d ``F.interpolate(mode="nearest")`` (cached,
    read-only)."""
    grid = torch.arange(in_size, dtype=torch.float64).view(1, 1, -1)
    index = F.interpolate(grid, size=out_size, mode="nearest")[0, 0].long().numpy()
    index.flags.writeable = False
    return index


def _centre_source(index: np.ndarray, size: int, source: int) -> np.ndarray:
    if size == source:
        return index
    return np.minimum(((index + 0.5) * (source / size)).astype(np.int64), source - 1)


def draw_geometry(height: int, width: int, rng: np.random.Generator,
                  cfg: TrainParams) -> Geometry:
    """A random crop and flip of an image of ``(height, width)`` under ``cfg.crop``."""
    if cfg.crop == "official":
        size = resized_shape(height, width, cfg.resize_short, cfg.resize_max)
        h, w = min(size[0], cfg.crop_size), min(size[1], cfg.crop_size)
        box = (int(rng.integers(0, size[0] - h + 1)), int(rng.integers(0, size[1] - w + 1)), h, w)
    else:
        size = (height, width)
        box = crop_box(height, width, rng, cfg.crop_scale)
    return Geometry((height, width), size, box, bool(rng.random() < 0.5))


def resized_shape(height: int, width: int, short: int, longest: int) -> tuple[int, int]:
    """detectron2's ``ResizeShortestEdge``: short side to ``short``, long side at most
    ``longest`` (0 = no limit), each rounded half up."""
    scale = short / min(height, width)
    if longest and max(height, width) * scale > longest:
        scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def crop_box(height: int, width: int, rng: np.random.Generator,
             scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)
             ) -> tuple[int, int, int, int]:
    """A random box ``(y0, x0, h, w)`` covering a ``scale`` fraction of the area (RRC-style)."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def crop_view(image: np.ndarray, geom: Geometry) -> np.ndarray:
    """The geometry's crop of an RGB ``(H, W, 3)`` image, resized first where it says so
    (bilinear up, area down), flipped where it says so."""
    if geom.size != geom.source:
        up = geom.size[0] >= geom.source[0]
        image = cv2.resize(image, geom.size[::-1],
                           interpolation=cv2.INTER_LINEAR if up else cv2.INTER_AREA)
    y0, x0, h, w = geom.box
    view = image[y0:y0 + h, x0:x0 + w]
    return cv2.flip(view, 1) if geom.flip else view  # numpy's [:, ::-1] copies 17x slower


def to_chw(view: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → contiguous ``(3, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1)))  # 3x torch's permute


def resize_view(view: np.ndarray, resolution: int, antialias: bool) -> torch.Tensor:
    """uint8 ``(h, w, 3)`` → uint8 ``(3, resolution, resolution)``, bilinear (half-pixel
    centres). With ``antialias`` torch's antialiased filter; without, plain bilinear sampling,
    as ``F.interpolate(mode="bilinear")`` computes it (cv2's version of it: 10x faster)."""
    if not antialias:
        if view.shape[:2] == (resolution, resolution):
            return to_chw(view)
        size = (resolution, resolution)
        return to_chw(cv2.resize(np.ascontiguousarray(view), size, interpolation=cv2.INTER_LINEAR))
    out = F.interpolate(to_chw(view)[None].float(), size=(resolution, resolution),
                        mode="bilinear", antialias=True, align_corners=False)[0]
    return out.round().clamp(0, 255).to(torch.uint8)


def color_aug_ssd(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """detectron2's ColorAugSSD on uint8 ``(H, W, 3)``: brightness ±32, then contrast
    0.5-1.5 before or after saturation 0.5-1.5 and hue ±18 (of 180), each with p 0.5."""
    if rng.random() < 0.5:
        img = _affine(img, 1.0, rng.uniform(-32, 32))
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img = _affine(img, rng.uniform(0.5, 1.5), 0.0)
    if rng.random() < 0.5:
        img = _map_hsv(img, 1, _affine_table(rng.uniform(0.5, 1.5), 0.0))
    if rng.random() < 0.5:
        img = _shift_hue(img, int(rng.integers(-18, 19)))
    if not contrast_first and rng.random() < 0.5:
        img = _affine(img, rng.uniform(0.5, 1.5), 0.0)
    return img


def _affine_table(alpha: float, beta: float) -> np.ndarray:
    """``clip(x * alpha + beta)`` truncated to uint8 for every x, as ColorAugSSD converts."""
    values = np.arange(256, dtype=np.float32) * np.float32(alpha) + np.float32(beta)
    return np.clip(values, 0, 255).astype(np.uint8)


def _affine(img: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """ColorAugSSD's ``convert`` through a lookup table: its values, without a float image."""
    return cv2.LUT(img, _affine_table(alpha, beta))


def _map_hsv(img: np.ndarray, channel: int, values: np.ndarray) -> np.ndarray:
    """An RGB image with one channel of its uint8 HSV form mapped through ``values``."""
    table = np.arange(256, dtype=np.uint8)
    table[:len(values)] = values
    hsv = list(cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV)))  # a one-channel LUT: 2x faster
    hsv[channel] = cv2.LUT(hsv[channel], table)
    return cv2.cvtColor(cv2.merge(hsv), cv2.COLOR_HSV2RGB)


def _shift_hue(img: np.ndarray, shift: int) -> np.ndarray:
    """Hue turned by ``shift`` of OpenCV's 180 steps (uint8 HSV, as ColorAugSSD does)."""
    return _map_hsv(img, 0, ((np.arange(180) + shift) % 180).astype(np.uint8))


def strong_view(img: np.ndarray, rng: np.random.Generator, cfg: TrainParams) -> np.ndarray:
    """The student's strong view of uint8 ``(H, W, 3)``: colour jitter (random order, p
    ``jitter_p``), greyscale (p ``grayscale_p``), Gaussian blur (p ``blur_p``, σ in view
    pixels): torchvision's ColorJitter and RandomGrayscale and PIL's blur, in OpenCV."""
    if rng.random() < cfg.jitter_p:
        img = _jitter(img, rng, cfg.jitter, cfg.hue_jitter)
    if rng.random() < cfg.grayscale_p:
        img = cv2.cvtColor(_grey(img), cv2.COLOR_GRAY2RGB)
    if rng.random() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*cfg.blur_sigma)))
    return img


def _jitter(img: np.ndarray, rng: np.random.Generator, strength: float,
            hue: float) -> np.ndarray:
    """Brightness, contrast, saturation (factors in 1 ± strength) and hue (± hue turns) in a
    random order, as torchvision's ColorJitter does them on PIL images (the first three to
    the grey level); an operation of strength 0 is skipped."""
    for i in rng.permutation(4):
        if i < 3 and strength > 0:
            f = float(rng.uniform(max(0.0, 1 - strength), 1 + strength))
            if i == 0:
                img = _blend(img, f, 0.0)
            elif i == 1:
                grey = _grey(img)
                img = _blend(img, f, (1 - f) * int(cv2.sumElems(grey)[0] / grey.size + 0.5))
            else:
                img = np.asarray(ImageEnhance.Color(Image.fromarray(img)).enhance(f))
        elif i == 3 and hue > 0:  # OpenCV's 180-step hue: PIL's HSV costs 10x more
            img = _shift_hue(img, int(round(rng.uniform(-hue, hue) * 180)))
    return img


_LUMA = np.array([[19595, 38470, 7471]], np.float32)


def _grey(img: np.ndarray) -> np.ndarray:
    """PIL's ``convert("L")`` of an RGB uint8 image (ITU-R 601-2 luma), as torchvision has it:
    ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, 2x faster than PIL. In float32 every sum is
    an exact integer (at most 255 * 2^16 < 2^24), so any order of the products gives PIL's."""
    luma = cv2.transform(img.astype(np.float32), _LUMA)
    return ((luma.astype(np.int32) + 0x8000) >> 16).astype(np.uint8)


def _blend(img: np.ndarray, factor: float, offset: float) -> np.ndarray:
    """``img * factor + offset`` clipped and truncated to uint8, as a lookup table."""
    table = np.clip(np.arange(256) * factor + offset, 0, 255).astype(np.uint8)
    return cv2.LUT(img, table)


def cutout_box(height: int, width: int, rng: np.random.Generator,
               size: tuple[float, float]) -> tuple[int, int, int, int] | None:
    """One box ``(y0, y1, x0, x1)`` with sides in ``size`` fractions, inside the view."""
    if size[1] <= 0:
        return None
    h = max(1, int(height * rng.uniform(*size)))
    w = max(1, int(width * rng.uniform(*size)))
    y0 = int(rng.integers(0, height - h + 1))
    x0 = int(rng.integers(0, width - w + 1))
    return y0, y0 + h, x0, x0 + w
