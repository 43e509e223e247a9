"""Training data: shards (``shards.reader.sample_pipeline``, forever) → views and compact
masks → batches.

Masks never exist at their stored size here: each RLE is sampled straight at the view's
nearest-neighbour grid (``rle.grid_toggles``) and travels as the positions where its value
flips; :func:`expand_masks` turns a batch of them into dense masks on the training device.
:func:`reference_masks` is the same result the plain way (decode, crop, flip, resize), for
tests and ``bench/loader.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from config import TrainParams
from shards import rle as rle_codec
from shards.reader import NoGoodSamples, SkipCounter, reader_info, sample_pipeline
from train.augment import (
    Geometry,
    color_aug_ssd,
    crop_view,
    cutout_box,
    draw_geometry,
    resize_view,
    strong_view,
)


def prepare(sample: dict, rng: np.random.Generator, cfg: TrainParams) -> dict:
    """One decoded sample → teacher view, strong student view, and its masks sampled at the
    mask view's grid (``toggles`` per mask, see :func:`expand_masks`)."""
    image = sample["image"]
    geom, out = make_views(image, rng, cfg)
    out.update(sample_masks(sample["rles"], image.shape[:2], geom, cfg.mask_resolution))
    return out


def make_views(image: np.ndarray, rng: np.random.Generator,
               cfg: TrainParams) -> tuple[Geometry, dict]:
    """The view geometry of an RGB image and ``{teacher, student, keep}``: both views at
    ``clip_resolution``, and where the mask view keeps pixels (not under the cutout)."""
    geom = draw_geometry(image.shape[0], image.shape[1], rng, cfg)
    view = np.ascontiguousarray(crop_view(image, geom))
    if cfg.color_aug_ssd:
        view = color_aug_ssd(view, rng)
    student, box = view, None
    if cfg.strong_aug:
        student = strong_view(view, rng, cfg)
        box = cutout_box(view.shape[0], view.shape[1], rng, cfg.cutout)
        if box is not None:
            student = student.copy()  # may be the shared view, or read-only from PIL
            student[box[0]:box[1], box[2]:box[3]] = 0
    res = cfg.clip_resolution
    return geom, {"teacher": resize_view(view, res, cfg.antialias),
                  "student": resize_view(student, res, cfg.antialias),
                  "keep": keep_mask(geom, box, cfg.mask_resolution)}


def sample_masks(rles: list[dict], size: tuple[int, int], geom: Geometry,
                 resolution: int) -> dict:
    """RLEs of an image of ``size`` → their toggles at the geometry's ``resolution``² grid:
    ``toggles`` (all masks), ``lengths`` (per mask) and ``columns`` (the sampled column of
    each mask-view column; flips and repeats happen there)."""
    rows, cols = geom.mask_indices(resolution)
    unique, columns = np.unique(cols, return_inverse=True)
    toggles, lengths = rle_codec.grid_toggles(rles, size[0], size[1], rows, unique)
    return {"toggles": torch.from_numpy(toggles), "lengths": torch.from_numpy(lengths),
            "columns": torch.from_numpy(columns.astype(np.int64))}


def keep_mask(geom: Geometry, box: tuple[int, int, int, int] | None,
              resolution: int) -> torch.Tensor:
    """``(resolution, resolution)`` bool: False where the mask view samples the cutout."""
    keep = torch.ones(resolution, resolution, dtype=torch.bool)
    if box is not None:
        rows, cols = geom.view_indices(resolution)
        inside_r = torch.from_numpy((rows >= box[0]) & (rows < box[1]))
        inside_c = torch.from_numpy((cols >= box[2]) & (cols < box[3]))
        keep &= ~(inside_r[:, None] & inside_c[None, :])
    return keep


def prepare_stage(cfg: TrainParams, seed: int, handler: SkipCounter) -> Callable:
    """Stage: :func:`prepare` every sample with a generator seeded per reader."""
    def stage(src: Iterator[dict]) -> Iterator[dict]:
        rank, _, worker, _ = reader_info()
        rng = np.random.default_rng([seed, rank, worker])
        for sample in src:
            try:
                yield prepare(sample, rng, cfg)
            except ValueError as exc:  # masks that do not fit their image: skipped, counted
                handler(ValueError(f"sample {sample['key']}: {exc}"))
    return stage


def collate(samples: list[dict]) -> dict:
    """Stack views; concatenate every sample's compact masks (``counts``: masks per sample)."""
    return {"teacher": torch.stack([s["teacher"] for s in samples]),
            "student": torch.stack([s["student"] for s in samples]),
            "keep": torch.stack([s["keep"] for s in samples]),
            "columns": torch.stack([s["columns"] for s in samples]),
            "toggles": torch.cat([s["toggles"] for s in samples]),
            "lengths": torch.cat([s["lengths"] for s in samples]),
            "counts": torch.tensor([len(s["lengths"]) for s in samples])}


def expand_masks(batch: dict, max_masks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Compact masks of a collated batch (on any device) → ``masks (B, M, r, r)`` bool and
    ``valid (B, M)``: cutout removed, masks of ≤ 1 pixel dropped, the ``max_masks`` largest
    of each image kept, largest first (stable), padded with empty masks."""
    keep, columns, counts = batch["keep"], batch["columns"], batch["counts"]
    b, r = keep.shape[0], keep.shape[-1]
    n = int(counts.sum())
    device = keep.device
    owner = torch.repeat_interleave(torch.arange(n, device=device), batch["lengths"])
    flips = torch.zeros(n * r * r, dtype=torch.uint8, device=device)
    ones = torch.ones_like(owner, dtype=torch.uint8)
    flips.index_put_((owner * (r * r) + batch["toggles"],), ones, accumulate=True)
    # the parity of the flips so far is the value; uint8 sums wrap mod 256, parity survives
    dense = flips.view(n, r * r).cumsum(dim=1, dtype=torch.uint8).bitwise_and_(1).bool()
    image = torch.repeat_interleave(torch.arange(b, device=device), counts)
    dense = dense.view(n, r, r).transpose(1, 2)  # (mask, row, sampled column)
    dense = torch.gather(dense, 2, columns[image][:, None, :].expand(n, r, r)) & keep[image]
    area = dense.flatten(1).sum(1)
    order = torch.argsort(area, descending=True, stable=True)
    order = order[torch.argsort(image[order], stable=True)]  # by image, largest first
    order = order[area[order] > 1]
    rank = torch.arange(order.numel(), device=device)
    kept_counts = torch.bincount(image[order], minlength=b)
    rank -= torch.repeat_interleave(torch.cumsum(kept_counts, 0) - kept_counts, kept_counts)
    order, rank = order[rank < max_masks], rank[rank < max_masks]
    width = max(1, int(rank.max()) + 1 if rank.numel() else 1)
    masks = torch.zeros(b, width, r, r, dtype=torch.bool, device=device)
    valid = torch.zeros(b, width, dtype=torch.bool, device=device)
    masks[image[order], rank] = dense[order]
    valid[image[order], rank] = True
    return masks, valid


def reference_masks(masks: np.ndarray, geom: Geometry, keep: torch.Tensor,
                    max_masks: int) -> torch.Tensor:
    """What :func:`expand_masks` gives for one image, the plain way: full-size masks
    ``(N, H, W)`` resized, cropped and flipped as the geometry says, then resized to the
    keep mask's size by ``F.interpolate(mode="nearest")``, cut out, filtered and sorted."""
    if geom.size != geom.source:
        index_r = _centre(geom.size[0], geom.source[0])
        index_c = _centre(geom.size[1], geom.source[1])
        masks = masks[:, index_r][:, :, index_c]
    y0, x0, h, w = geom.box
    view = masks[:, y0:y0 + h, x0:x0 + w]
    if geom.flip:
        view = view[:, :, ::-1]
    m = torch.from_numpy(np.ascontiguousarray(view))[None].to(torch.uint8)
    m = F.interpolate(m, size=tuple(keep.shape), mode="nearest")[0].bool() & keep
    area = m.flatten(1).sum(1)
    order = torch.argsort(area, descending=True, stable=True)
    return m[order[area[order] > 1][:max_masks]]


def _centre(size: int, source: int) -> np.ndarray:
    return np.minimum(((np.arange(size) + 0.5) * (source / size)).astype(np.int64), source - 1)


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
    handler = SkipCounter()
    pipe = sample_pipeline(urls, forever=True, seed=seed, shuffle_buffer=cfg.shuffle_buffer,
                           readers=max(1, world_size) * max(1, cfg.num_workers),
                           handler=handler, masks=False)
    pipe.append(prepare_stage(cfg, seed, handler))
    pipe.append(batch_stage(micro_batch))
    if cfg.num_workers <= 0:
        return _one_line_errors(iter(pipe))
    loader = torch.utils.data.DataLoader(pipe, batch_size=None, num_workers=cfg.num_workers,
                                         persistent_workers=False, prefetch_factor=2)
    return _one_line_errors(iter(loader))


def _one_line_errors(source: Iterator[dict]) -> Iterator[dict]:
    """Re-raise :class:`NoGoodSamples` as one line (a DataLoader worker's copy carries the
    worker's traceback in its message; its last line is the original message)."""
    try:
        yield from source
    except NoGoodSamples as exc:
        line = str(exc).strip().splitlines()[-1]
        raise NoGoodSamples(line.split("NoGoodSamples: ", 1)[-1]) from None
