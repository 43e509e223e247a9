"""Masks of a benchmark's images for mask-guided inference, made once by the masks stage.

The images to score (only those: a benchmark's image folder may hold other splits) are linked
into ``<cache>/<benchmark>-<generator>-<hash>/input`` under their label's key, with the SA-1B
JSON beside each where the benchmark ships regions; ``pipeline.masks.run`` writes shards of
them to ``.../shards`` (resumable, skipped when done, like any shards), and the masks are read
back per image at its size. An image the generator rejects (say, no SA-1B JSON) has no masks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from config import MasksParams, to_dict
from evaluate.benchmarks import Benchmark
from shards import rle
from shards.reader import list_shards, sample_pipeline

log = logging.getLogger(__name__)


def mask_folder(cache: str | Path, bench: Benchmark, masks: MasksParams) -> Path:
    """The cache folder of ``bench`` under ``masks``' generator and settings."""
    key = json.dumps([bench.root, [p.key for p in bench.pairs], to_dict(masks)],
                     sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return Path(cache) / f"{bench.name}-{masks.generator}-{digest}"


def benchmark_masks(cache: str | Path, bench: Benchmark,
                    masks: MasksParams) -> dict[str, list[dict]]:
    """``{pair key: RLEs}`` of every image of ``bench``, made by ``masks.generator`` (the
    masks stage over linked copies of the images) or read from the cache."""
    from pipeline.masks import run

    folder = mask_folder(cache, bench, masks)
    inputs = folder / "input"
    names = {}
    for pair in bench.pairs:
        stem = pair.key.rsplit(".", 1)[0].replace("/", "__")
        names[f"{stem}{pair.image.suffix}"] = pair.key
        _link(pair.image, inputs / f"{stem}{pair.image.suffix}")
        sidecar = pair.image.with_suffix(".json")
        if masks.generator == "sa1b" and sidecar.is_file():
            _link(sidecar, inputs / f"{stem}.json")
    shards = folder / "shards"
    summary = run(dataclasses.replace(masks, input=str(inputs), out=str(shards), max_side=0,
                                      split="val"))
    if summary.rejected:
        log.info("%s: %d of %d images have no %s masks (see %s)", bench.name, summary.rejected,
                 len(bench.pairs), masks.generator, shards / "rejects.parquet")
    found: dict[str, list[dict]] = {}
    for sample in sample_pipeline(list_shards(shards), split=False, masks=False):
        found[names[sample["record"]["source"]]] = sample["rles"]
    return found


def decode_for(rles: list[dict] | None, size: tuple[int, int]) -> np.ndarray | None:
    """``(N, H, W)`` bool masks of an image, or None when it has none."""
    return rle.decode(rles, *size) if rles else None


def _link(source: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if os.path.realpath(link) == os.path.realpath(source):
            return
        link.unlink()
    link.symlink_to(source.resolve())
