"""Training data: shards → infinite decoded stream → joint crop/flip → strong view → padded batches.

The stream is a list of webdataset stages (``make_stream``). Shards are split across DDP
ranks (``split_by_node``) and dataloader workers (``split_by_worker``); each split then cycles
through its shards forever in a freshly seeded order, so training counts steps, not epochs.
When there are fewer shards than ranks × workers, every reader resamples shards with its own
seed instead (webdataset ``ResampledShards``), which never runs dry.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import webdataset as wds

from config import TrainParams
from shards.reader import SkipCounter, decode_stage
from train.augment import cutout, joint_crop, strong_view


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


def make_stream(urls: list[str], seed: int, shuffle_buffer: int, num_workers: int,
                world_size: int, handler: SkipCounter | None = None) -> wds.DataPipeline:
    """Infinite stream of decoded samples ``{key, image, masks, record}`` (see module doc)."""
    if not urls:
        raise ValueError("train.shards: no shards to read")
    handler = handler or SkipCounter()
    readers = max(1, world_size) * max(1, num_workers)
    if len(urls) >= readers:
        stages = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker,
                  repeat_shuffled(seed)]
    else:
        stages = [wds.ResampledShards(urls, seed=seed, deterministic=True)]
    stages.append(wds.tarfile_to_samples(handler=handler))
    if shuffle_buffer > 0:
        stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer // 2, seed=seed))
    stages.append(lambda src: decode_stage(src, handler))
    return wds.DataPipeline(*stages)


def prepare(sample: dict, rng: np.random.Generator, cfg: TrainParams) -> dict:
    """One decoded sample → teacher view, strong student view and masks, all resized."""
    image, masks = joint_crop(sample["image"], sample["masks"], rng, cfg.crop_scale)
    if rng.random() < 0.5:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    res, mres = cfg.clip_resolution, cfg.mask_resolution
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    teacher = F.interpolate(img, size=(res, res), mode="bilinear", antialias=True,
                            align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
    m = torch.from_numpy(np.ascontiguousarray(masks))[None].to(torch.uint8)
    m = F.interpolate(m, size=(mres, mres), mode="nearest")[0].bool()
    student = teacher
    if cfg.strong_aug:
        student = strong_view(teacher, rng, cfg)
        student, box = cutout(student, rng, cfg.cutout)
        y0, y1, x0, x1 = (round(v * mres / res) for v in box)
        m[:, y0:y1, x0:x1] = False
    area = m.flatten(1).sum(1)
    order = torch.argsort(area, descending=True, stable=True)
    order = order[area[order] > 1][: cfg.max_masks]  # drop masks ≤ 1 pixel, keep the largest
    return {"teacher": teacher, "student": student, "masks": m[order]}


def prepare_stage(cfg: TrainParams, seed: int) -> Callable:
    """Stage: :func:`prepare` every sample with a generator seeded per reader."""
    def stage(src: Iterator[dict]) -> Iterator[dict]:
        rank, _, worker, _ = reader_info()
        rng = np.random.default_rng([seed, rank, worker])
        for sample in src:
            yield prepare(sample, rng, cfg)
    return stage


def collate(samples: list[dict]) -> dict:
    """Stack views; pad mask sets to the batch's largest count (``valid`` marks real masks)."""
    count = max(1, max(s["masks"].shape[0] for s in samples))
    size = samples[0]["masks"].shape[-2:]
    masks = torch.zeros(len(samples), count, *size, dtype=torch.bool)
    valid = torch.zeros(len(samples), count, dtype=torch.bool)
    for i, s in enumerate(samples):
        n = s["masks"].shape[0]
        masks[i, :n] = s["masks"]
        valid[i, :n] = True
    return {"teacher": torch.stack([s["teacher"] for s in samples]),
            "student": torch.stack([s["student"] for s in samples]),
            "masks": masks, "valid": valid}


def batch_stage(batch_size: int) -> Callable:
    """Stage: group samples into collated batches."""
    def stage(src: Iterator[dict]) -> Iterator[dict]:
        buf = []
        for sample in src:
            buf.append(sample)
            if len(buf) == batch_size:
                yield collate(buf)
                buf = []
    return stage


def batches(cfg: TrainParams, urls: list[str], micro_batch: int, seed: int,
            world_size: int = 1) -> Iterator[dict]:
    """Infinite iterator of collated micro-batches for this rank (``seed`` fixes the stream)."""
    pipe = make_stream(urls, seed, cfg.shuffle_buffer, cfg.num_workers, world_size)
    pipe.append(prepare_stage(cfg, seed))
    pipe.append(batch_stage(micro_batch))
    if cfg.num_workers <= 0:
        return iter(pipe)
    loader = torch.utils.data.DataLoader(pipe, batch_size=None, num_workers=cfg.num_workers,
                                         persistent_workers=False, prefetch_factor=2)
    return iter(loader)
