"""Reading shards as a webdataset pipeline: shard list → tar samples → decoded images + masks."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
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


class NoGoodSamples(ValueError):
    """A full pass over the shards gave no sample that decodes."""


def reader_info() -> tuple[int, int, int, int]:
    """``(rank, world_size, worker, num_workers)`` of the current process."""
    return wds.utils.pytorch_worker_info()


def repeat_shuffled(seed: int) -> Callable:
    """Stage: collect this reader's shard urls, then yield them forever, reshuffled each pass."""
    def stage(src: Iterator[dict]) -> Iterator[dict]:
        urls = list(src)
        if not urls:
            return
        rank, _, worker, _ = reader_info()
        rng = random.Random(f"{seed}-{rank}-{worker}")
        while True:
            rng.shuffle(urls)
            yield from (dict(u) for u in urls)
    return stage


class FirstGood:
    """Stops a stream that cannot give one good sample: until one sample of the folder has
    decoded, each sample is tried as it leaves its tar (before any shuffle buffer), and once a
    full pass over the shards has gone by without one, :class:`NoGoodSamples` says so."""

    def __init__(self, folder: str, shards_per_pass: int, handler: SkipCounter) -> None:
        self.folder, self.per_pass, self.handler = folder, shards_per_pass, handler
        self.found = False

    def urls(self, src: Iterator[dict]) -> Iterator[dict]:
        """Stage on shard urls: raise once a pass is done and nothing was good."""
        for seen, url in enumerate(src):
            if not self.found and seen >= self.per_pass:
                reasons = self.handler.reasons
                why = f", e.g. {'; '.join(reasons)}" if reasons else " (the shards hold none)"
                raise NoGoodSamples(f"train.shards: no sample of {self.folder} decodes in a "
                                    f"full pass over its shards{why}")
            yield url
            if self.found:
                yield from src
                return

    def samples(self, src: Iterator[dict]) -> Iterator[dict]:
        """Stage on raw samples: try each one until one is good."""
        for sample in src:
            if not self.found:
                try:
                    decoded = decode_sample(sample, masks=False)
                    rle_codec.check(decoded["rles"], *decoded["image"].shape[:2])
                    self.found = True
                except Exception as exc:  # noqa: BLE001 - recorded; the stream skips it later
                    if len(self.handler.reasons) < self.handler.keep:
                        self.handler.reasons.append(str(exc))
            yield sample


def sample_pipeline(urls: list[str], *, forever: bool = False, split: bool = True,
                    seed: int = 0, shuffle_buffer: int = 0, readers: int = 1,
                    handler: SkipCounter | None = None, masks: bool = True) -> wds.DataPipeline:
    """Decoded samples ``{key, image, record, rles[, masks]}`` of shards, as webdataset stages.

    Once through, or ``forever`` (training counts steps, not epochs): each reader (DDP rank ×
    dataloader worker; ``split`` shares the shards out among the ``readers``) cycles through
    its shards in a freshly seeded order each pass; with fewer shards than readers, each
    reader resamples shards with its own seed instead, which never runs dry. A stream that
    goes a full pass without one good sample stops with :class:`NoGoodSamples`. Bad samples
    are skipped and counted by ``handler``.
    """
    if not urls:
        raise ValueError("no shards to read")
    handler = handler or SkipCounter()
    if forever and len(urls) < readers:
        stages: list = [wds.ResampledShards(urls, seed=seed, deterministic=True)]
        per_pass = len(urls)
    else:
        stages = [wds.SimpleShardList(urls)]
        if split:
            stages += [wds.split_by_node, wds.split_by_worker]
        if forever:
            stages.append(repeat_shuffled(seed))
        per_pass = -(-len(urls) // readers) if split else len(urls)
    first = FirstGood(str(urls[0]).rsplit("/", 1)[0], per_pass, handler)
    stages += [first.urls, wds.tarfile_to_samples(handler=handler), first.samples]
    if shuffle_buffer > 0:
        stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer // 2, seed=seed))
    stages.append(lambda src: decode_stage(src, handler, masks))
    return wds.DataPipeline(*stages)
