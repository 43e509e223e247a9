"""Reading shards as a webdataset pipeline: shard list → tar samples → decoded images + masks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

from shards import rle as rle_codec
from shards import schema

log = logging.getLogger(__name__)


def list_shards(directory: str | Path) -> list[str]:
    """Sorted shard paths in ``directory`` (names matching the schema's pattern)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: shard directory not found")
    return sorted(str(p) for p in directory.iterdir() if schema.SHARD_RE.match(p.name))


def decode_image(data: bytes) -> np.ndarray:
    """Image bytes → RGB uint8 ``(H, W, 3)`` as stored (EXIF orientation is applied before
    writing, never on reading); ``ValueError`` if they do not decode."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8),
                         cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError("image bytes do not decode")
    return image


def decode_sample(sample: dict, masks: bool = True) -> dict:
    """A raw webdataset sample → ``{key, image, record, rles}`` (and, with ``masks``, the
    decoded ``(N, H, W)`` bool ``masks``; without, the RLEs are checked where they are read).

    Raises ``ValueError`` naming what is wrong, so a pipeline handler can count and skip it.
    """
    key = sample.get("__key__", "?")
    ext = schema.image_ext(sample)
    if ext is None:
        raise ValueError(f"sample {key}: no image ({'/'.join(schema.IMAGE_EXTS)})")
    if schema.MASKS_EXT not in sample:
        raise ValueError(f"sample {key}: no {schema.MASKS_EXT}")
    image = decode_image(sample[ext])
    record = json.loads(sample[schema.MASKS_EXT])
    if (record["height"], record["width"]) != image.shape[:2]:
        raise ValueError(
            f"sample {key}: masks are {record['height']}x{record['width']}, "
            f"image is {image.shape[0]}x{image.shape[1]}"
        )
    out = {"key": key, "image": image, "record": record, "rles": schema.record_rles(record)}
    if masks:
        out["masks"] = rle_codec.decode(out["rles"], *image.shape[:2])
    return out


class SkipCounter:
    """A webdataset handler that logs a bad sample, counts it and goes on; it also counts the
    good samples and keeps the first reasons, so a reader can tell when nothing decodes."""

    def __init__(self, keep: int = 3) -> None:
        self.count = 0
        self.good = 0
        self.reasons: list[str] = []
        self.keep = keep

    def __call__(self, exc: Exception) -> bool:
        self.count += 1
        if len(self.reasons) < self.keep:
            self.reasons.append(str(exc))
        if self.count <= 100 or self.count % 1000 == 0:  # a broken folder must not flood logs
            log.warning("skipping bad sample (%d so far): %s", self.count, exc)
        return True


def decode_stage(src: Iterator[dict], handler: SkipCounter,
                 masks: bool = True) -> Iterator[dict]:
    """Pipeline stage: decode every sample, skipping (and counting) bad ones."""
    for sample in src:
        try:
            decoded = decode_sample(sample, masks)
        except Exception as exc:  # noqa: BLE001 - any bad sample is skipped and counted
            if not handler(exc):
                raise
            continue
        handler.good += 1
        yield decoded


def sample_pipeline(
    urls: list[str],
    *,
    resampled: bool = False,
    shuffle_shards: bool = False,
    shuffle_buffer: int = 0,
    seed: int = 0,
    split: bool = True,
    handler: SkipCounter | None = None,
) -> wds.DataPipeline:
    """Decoded samples from shards, as a list of webdataset stages.

    ``resampled`` draws shards with replacement forever (training counts steps, not
    epochs); otherwise each shard is read once, optionally in a seeded shuffled order.
    ``split`` shards the list across DDP ranks and dataloader workers.
    """
    if not urls:
        raise ValueError("no shards to read")
    handler = handler or SkipCounter()
    stages: list = []
    if resampled:
        stages.append(wds.ResampledShards(urls, seed=seed, deterministic=True))
    else:
        stages.append(wds.SimpleShardList(urls))
        if shuffle_shards:
            stages.append(wds.shuffle(len(urls), initial=len(urls), seed=seed))
    if split and not resampled:
        stages += [wds.split_by_node, wds.split_by_worker]
    stages.append(wds.tarfile_to_samples(handler=handler))
    if shuffle_buffer > 0:
        stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer // 2, seed=seed))
    stages.append(lambda src: decode_stage(src, handler))
    return wds.DataPipeline(*stages)
