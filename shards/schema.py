"""What one shard sample holds. Writer, reader and verify all import these names.

A sample is one image: ``__key__``, image bytes under ``jpg`` or ``png``, and ``masks.json``
in the SA-1B / SAM AMG record layout so that ``pycocotools.mask.decode`` reads every mask.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from shards import rle as rle_codec

SCHEMA_VERSION = 1
IMAGE_EXTS = ("jpg", "png")
MASKS_EXT = "masks.json"
SHARD_PATTERN = "{split}-{index:06d}.tar"
SHARD_RE = re.compile(r"^(?P<split>[\w.-]+)-(?P<index>\d{6})\.tar$")
MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"


@dataclass(frozen=True)
class Generator:
    """Which mask generator made a record, with its parameters."""

    name: str
    params: dict = field(default_factory=dict)
    version: str = "1"


def shard_name(split: str, index: int) -> str:
    return SHARD_PATTERN.format(split=split, index=index)


def make_record(
    masks: np.ndarray,
    source: str,
    generator: Generator,
    predicted_iou: list[float] | None = None,
    stability_score: list[float] | None = None,
) -> dict:
    """Build the ``masks.json`` record for boolean masks ``(N, H, W)``."""
    _, height, width = masks.shape
    rles = rle_codec.encode(masks)
    return record_from_rles(rles, height, width, source, generator, predicted_iou, stability_score)


def record_from_rles(
    rles: list[dict],
    height: int,
    width: int,
    source: str,
    generator: Generator,
    predicted_iou: list[float] | None = None,
    stability_score: list[float] | None = None,
) -> dict:
    """Build the ``masks.json`` record from RLEs already at ``(height, width)``."""
    n = len(rles)
    ious = predicted_iou if predicted_iou is not None else [1.0] * n
    stab = stability_score if stability_score is not None else [1.0] * n
    annotations = [
        {
            "segmentation": {"size": [height, width], "counts": r["counts"]},
            "area": a,
            "bbox": b,
            "predicted_iou": float(i),
            "stability_score": float(s),
        }
        for r, a, b, i, s in zip(rles, rle_codec.area(rles), rle_codec.bbox(rles), ious, stab)
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "height": height,
        "width": width,
        "source": source,
        "generator": {"name": generator.name, "params": generator.params,
                      "version": generator.version},
        "annotations": annotations,
    }


def encode_record(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def check_record(record: dict) -> None:
    """Raise ``ValueError`` naming the first problem in a ``masks.json`` record."""
    for key in ("height", "width", "source", "generator", "annotations"):
        if key not in record:
            raise ValueError(f"masks.json has no '{key}'")
    version = record.get("schema_version", SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise ValueError(f"masks.json schema_version {version} is newer than {SCHEMA_VERSION}")
    for i, ann in enumerate(record["annotations"]):
        seg = ann.get("segmentation")
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            raise ValueError(f"annotation {i} has no RLE segmentation")


def record_rles(record: dict) -> list[dict]:
    """The RLEs (``size``, ``counts``) of a checked record, in annotation order."""
    check_record(record)
    return [a["segmentation"] for a in record["annotations"]]


def image_ext(sample: dict) -> str | None:
    """The image key present in a webdataset sample dict, if any."""
    return next((ext for ext in IMAGE_EXTS if ext in sample), None)
