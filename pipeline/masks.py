"""The ``masks`` stage: input images → mask generator → WebDataset shards of COCO RLE masks.

The input list is planned into shards up front (sorted, by count and source bytes), so each
shard is one independent task: dask runs them in parallel, and a rerun skips every shard
whose tar and part file are complete. A bad input becomes a row of ``rejects.parquet``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from config import ConfigError, MasksParams, to_dict
from pipeline.generators import Item, generator_params, get_generator, needs_annotations
from pipeline.images import BadInput, list_inputs, load_image
from shards import schema
from shards.manifest import MANIFEST_SCHEMA, REJECTS_SCHEMA, write_table
from shards.writer import sha256_file, write_shard

log = logging.getLogger(__name__)
PARTS = "parts"  # one JSON per finished shard task: its manifest rows and rejects
SETTINGS = "masks_settings.json"  # what the shards were made with; a rerun must match


@dataclass(frozen=True)
class ShardTask:
    index: int
    items: tuple[Item, ...]


@dataclass(frozen=True)
class MasksSummary:
    out: str
    shards: int
    written: int
    rejected: int
    skipped_shards: int

    def line(self) -> str:
        return (f"{self.written} written, {self.rejected} rejected "
                f"({self.shards} shards, {self.skipped_shards} already done) in {self.out}")


def run(cfg: MasksParams) -> MasksSummary:
    """Write every planned shard that is not already complete, then manifest and rejects."""
    out = Path(cfg.out)
    items = list_items(cfg)
    _claim_output(out, cfg)
    tasks = plan_shards(items, cfg.shard_size, cfg.shard_max_bytes)
    todo = [t for t in tasks if not _is_done(out, cfg.split, t)]
    from pipeline.parallel import run_tasks

    run_tasks(process_shard, todo, cfg)
    rows, rejects = [], []
    for task in tasks:
        part = json.loads((out / PARTS / f"{_stem(cfg.split, task.index)}.json").read_text())
        rows += part["rows"]
        rejects += part["rejects"]
    write_table(rows, MANIFEST_SCHEMA, out / schema.MANIFEST)
    write_table(rejects, REJECTS_SCHEMA, out / schema.REJECTS)
    written_shards = sum(1 for t in tasks if (out / schema.shard_name(cfg.split, t.index)).exists())
    return MasksSummary(str(out), written_shards, len(rows), len(rejects), len(tasks) - len(todo))


def list_items(cfg: MasksParams) -> list[Item]:
    """Every input file under ``cfg.input`` (nested folders included), with its SA-1B JSON when
    the generator needs it. Non-image files are items too: they become rejects with a reason."""
    root = Path(cfg.input)
    try:
        paths = list_inputs(root)
    except FileNotFoundError:
        raise ConfigError(f"masks.input: folder not found: {root}") from None
    items = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        annotation = path.with_suffix(".json") if needs_annotations(cfg) else None
        items.append(Item(
            key=sample_key(rel, cfg.generator),
            image=str(path),
            source=rel,
            annotation=str(annotation) if annotation is not None and annotation.exists() else None,
        ))
    if not items:
        raise ConfigError(f"masks.input: no images found under {root}")
    return items


def sample_key(rel: str, generator: str) -> str:
    """A stable shard key: the SA-1B file stem, else a hash of the relative source path."""
    stem = Path(rel).stem
    if generator == "sa1b" and "/" not in rel and re.fullmatch(r"[A-Za-z0-9_-]+", stem):
        return stem
    return hashlib.sha1(rel.encode()).hexdigest()[:20]


def plan_shards(items: list[Item], shard_size: int, max_bytes: int) -> list[ShardTask]:
    """Cut the sorted item list into shards of at most ``shard_size`` items and ``max_bytes``
    source bytes (estimated from file sizes, so the plan is known before any work)."""
    tasks, current, size = [], [], 0
    for item in items:
        nbytes = _file_size(item.image) + (_file_size(item.annotation) if item.annotation else 0)
        if current and (len(current) >= shard_size or size + nbytes > max_bytes):
            tasks.append(ShardTask(len(tasks), tuple(current)))
            current, size = [], 0
        current.append(item)
        size += nbytes
    if current:
        tasks.append(ShardTask(len(tasks), tuple(current)))
    return tasks


def process_shard(task: ShardTask, cfg: MasksParams) -> dict:
    """Run the generator over one shard's items; write the part file, then the tar (atomic)."""
    out = Path(cfg.out)
    generator = get_generator(cfg)
    samples, rows, rejects, seen = [], [], [], set()
    for item in task.items:
        try:
            if item.key in seen:
                raise BadInput(f"duplicate key {item.key}")
            image = load_image(item.image, cfg.max_side, cfg.max_pixels, cfg.min_side)
            masks = generator(item, image)
        except BadInput as exc:
            rejects.append({"key": item.key, "source": item.source, "reason": str(exc)})
            continue
        seen.add(item.key)
        height, width = image.rgb.shape[:2]
        record = schema.record_from_rles(masks.rles, height, width, item.source, generator.info,
                                         masks.predicted_iou or None, masks.stability_score or None)
        samples.append({"__key__": item.key, image.ext: image.data,
                        schema.MASKS_EXT: schema.encode_record(record)})
        rows.append({"key": item.key, "source": item.source, "num_masks": len(masks.rles),
                     "height": height, "width": width})
    shard = out / schema.shard_name(cfg.split, task.index)
    tmp_info = write_shard(shard.with_name(shard.name + ".staged"), samples) if samples else None
    for row in rows:
        row.update(shard=shard.name, shard_sha256=tmp_info.sha256)
    part = {"sources": [i.source for i in task.items], "rows": rows, "rejects": rejects}
    _write_json(out / PARTS / f"{_stem(cfg.split, task.index)}.json", part)
    if tmp_info is not None:
        os.replace(tmp_info.path, shard)
    return {"index": task.index, "written": len(rows), "rejected": len(rejects)}


def _is_done(out: Path, split: str, task: ShardTask) -> bool:
    """A task is done when its part file lists the same inputs and its tar matches the hash."""
    part_path = out / PARTS / f"{_stem(split, task.index)}.json"
    if not part_path.exists():
        return False
    part = json.loads(part_path.read_text())
    if part["sources"] != [i.source for i in task.items]:
        raise ConfigError(f"{part_path}: input files changed since this shard was written; "
                          "use a new masks.out")
    if not part["rows"]:
        return True
    shard = out / schema.shard_name(split, task.index)
    if not shard.exists():
        return False
    if sha256_file(shard) != part["rows"][0]["shard_sha256"]:
        raise ConfigError(f"{shard}: sha256 differs from {part_path}; the shard was modified")
    return True


def _claim_output(out: Path, cfg: MasksParams) -> None:
    """Create ``out`` or check that its finished shards were made with the same settings.

    Settings bind a folder only once a shard task has finished: a run that failed before
    (a missing checkpoint, say) leaves nothing to protect, so a corrected rerun may proceed.
    """
    settings = {k: v for k, v in to_dict(cfg).items()
                if k not in ("workers", "scheduler", "device", "sam", "dino", "superpixel")}
    settings["generator_params"] = generator_params(cfg)
    path = out / SETTINGS
    if path.exists() and any((out / PARTS).glob("*.json")):
        old = json.loads(path.read_text())
        changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
        if changed:
            raise ConfigError(f"{out}: shards were written with other settings "
                              f"({', '.join(changed)} differ); use a new masks.out or remove it")
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.tmp")) + list(out.glob("*.staged")):
        stale.unlink()  # leftovers of a killed task; their part file decides what is redone
    _write_json(path, settings)


def _stem(split: str, index: int) -> str:
    return schema.shard_name(split, index).removesuffix(".tar")


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
