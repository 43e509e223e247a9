"""Augmentations: a joint random resized crop of image and masks, and the student's strong view.

The strong view follows the official loader (colour jitter with p 0.8, greyscale p 0.2,
Gaussian blur p 0.5, one cutout), with strengths taken from params: in the synthetic world hue
identifies classes, so the default hue jitter is 0.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from config import TrainParams


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


def joint_crop(image: np.ndarray, masks: np.ndarray, rng: np.random.Generator,
               scale: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The same random crop of ``image (H, W, 3)`` and ``masks (N, H, W)``."""
    y0, x0, h, w = crop_box(image.shape[0], image.shape[1], rng, scale)
    return image[y0:y0 + h, x0:x0 + w], masks[:, y0:y0 + h, x0:x0 + w]


def _jitter(img: np.ndarray, rng: np.random.Generator, strength: float, hue: float) -> np.ndarray:
    """Brightness, contrast, saturation (factors in 1 ± strength) and hue (± hue turns)."""
    out = img * rng.uniform(1 - strength, 1 + strength)
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = (out - grey.mean()) * rng.uniform(1 - strength, 1 + strength) + grey.mean()
    grey = (out @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    out = (out - grey) * rng.uniform(1 - strength, 1 + strength) + grey
    out = np.clip(out, 0, 255)
    if hue > 0:
        hsv = cv2.cvtColor(out.astype(np.uint8), cv2.COLOR_RGB2HSV)
        shift = int(round(rng.uniform(-hue, hue) * 180))
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + shift) % 180
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    return out


def strong_view(image: torch.Tensor, rng: np.random.Generator, cfg: TrainParams) -> torch.Tensor:
    """uint8 ``(3, H, W)`` → the strongly augmented student view (same geometry)."""
    img = image.permute(1, 2, 0).numpy().astype(np.float32)
    if rng.random() < 0.8:
        img = _jitter(img, rng, cfg.jitter, cfg.hue_jitter)
    if rng.random() < cfg.grayscale_p:
        img = np.repeat(img @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(img.shape)
    if rng.random() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*cfg.blur_sigma)))
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)


def cutout(image: torch.Tensor, rng: np.random.Generator, size: tuple[float, float]
           ) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Black out one box with sides in ``size`` fractions → image, box ``(y0, y1, x0, x1)``."""
    _, height, width = image.shape
    if size[1] <= 0:
        return image, (0, 0, 0, 0)
    h = max(1, int(height * rng.uniform(*size)))
    w = max(1, int(width * rng.uniform(*size)))
    y0 = int(rng.integers(0, height - h + 1))
    x0 = int(rng.integers(0, width - w + 1))
    image = image.clone()
    image[:, y0:y0 + h, x0:x0 + w] = 0
    return image, (y0, y0 + h, x0, x0 + w)
