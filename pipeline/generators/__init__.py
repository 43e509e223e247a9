"""Mask generators: each turns one input item into RLE masks at the stored image's size.

A generator is built once per worker process (:func:`get_generator` caches it) and called per
image. ``sa1b`` reads masks that ship with a data set; ``sam``, ``dino`` and ``superpixel``
compute them from pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from config import MasksParams, to_dict
from pipeline.images import LoadedImage
from shards.schema import Generator

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Item:
    """One input image (and the annotation file that comes with it, for ``sa1b``)."""

    key: str
    image: str
    source: str  # path relative to the input root, recorded in manifest and masks.json
    annotation: str | None = None
    duplicate_of: str | None = None  # the source that already has this key: a reject


@dataclass
class MaskSet:
    """Masks of one image as COCO RLEs at the stored image's size, with SAM-style scores."""

    rles: list[dict]
    predicted_iou: list[float] = field(default_factory=list)
    stability_score: list[float] = field(default_factory=list)


def encoder_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a generator's image encoder runs in: ``precision`` (one of
    ``config.PRECISIONS``) on a GPU, fp32 on the CPU."""
    import torch

    if device.type != "cuda":
        return torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class MaskGenerator(Protocol):
    info: Generator

    def __call__(self, item: Item, image: LoadedImage) -> MaskSet: ...


def _build_sa1b(cfg: MasksParams) -> MaskGenerator:
    from pipeline.generators.sa1b import Sa1bIngest

    return Sa1bIngest()


def _build_sam(cfg: MasksParams) -> MaskGenerator:
    from pipeline.generators.sam import SamGenerator

    return SamGenerator(cfg.sam, cfg.device)


def _build_sam2(cfg: MasksParams) -> MaskGenerator:
    from pipeline.generators.sam2 import Sam2Generator

    return Sam2Generator(cfg.sam2, cfg.device)


def _build_dino(cfg: MasksParams) -> MaskGenerator:
    from pipeline.generators.dino import DinoGenerator

    return DinoGenerator(cfg.dino, cfg.device)


def _build_superpixel(cfg: MasksParams) -> MaskGenerator:
    from pipeline.generators.superpixel import SuperpixelGenerator

    return SuperpixelGenerator(cfg.superpixel)


BUILDERS: dict[str, Callable[[MasksParams], MaskGenerator]] = {
    "sa1b": _build_sa1b,
    "sam": _build_sam,
    "sam2": _build_sam2,
    "dino": _build_dino,
    "superpixel": _build_superpixel,
}


def generator_params(cfg: MasksParams) -> dict:
    """The params section of the chosen generator (what goes into ``masks.json``)."""
    section = getattr(cfg, cfg.generator, None)
    return to_dict(section) if section is not None else {}


def build_generator(cfg: MasksParams) -> MaskGenerator:
    if cfg.generator not in BUILDERS:
        known = ", ".join(sorted(BUILDERS))
        raise ValueError(f"masks.generator: unknown generator '{cfg.generator}' (known: {known})")
    return BUILDERS[cfg.generator](cfg)


@lru_cache(maxsize=2)
def get_generator(cfg: MasksParams) -> MaskGenerator:
    """The generator for ``cfg``, built once per process (models load once per worker)."""
    return build_generator(cfg)


def needs_annotations(cfg: MasksParams) -> bool:
    """Whether items are image + JSON pairs (data sets that ship masks) rather than images."""
    return cfg.generator == "sa1b"
