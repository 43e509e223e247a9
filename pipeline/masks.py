"""The ``masks`` stage: input images → mask generator → WebDataset shards of COCO RLE masks.

The input list is planned into shards up front (sorted, by count and source bytes), so each
shard is one independent task: dask runs them in parallel, and a rerun skips every shard
whose tar and part file are complete and whose input files are unchanged (size and mtime);
a shard whose inputs changed is made again. A bad input becomes a row of ``rejects.parquet``.

A new output folder is built beside it (``.<name>.partial-<settings hash>``) and renamed into
place when complete, so a killed run, ``dvc repro`` included (DVC removes its outputs before a
stage runs), resumes from there; an existing output folder is resumed in place. A lock file
keeps a second run out of a folder while one writes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from config import ConfigError, MasksParams, to_dict
from files import write_json
from pipeline.generators import Item, generator_params, get_generator, needs_annotations
from pipeline.images import BadInput, list_inputs, load_image
from shards import schema
from shards.manifest import MANIFEST_SCHEMA, REJECTS_SCHEMA, write_table
from shards.writer import sha256_file, write_shard

log = logging.getLogger(__name__)
PARTS = "parts"  # one JSON per finished shard task: its manifest rows and rejects
SETTINGS = "masks_settings.json"  # what the shards were made with; a rerun must match
LOCK = ".masks.lock"  # in .dvcignore: not content


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
    final = Path(cfg.out).absolute()
    if final.exists() and not final.is_dir():
        raise ConfigError(f"masks.out: {final} is a file, not a folder")
    cfg = dataclasses.replace(cfg, input=str(Path(cfg.input).absolute()))
    items = list_items(cfg)
    _check_not_inside(final, Path(cfg.input))
    fresh = not (final.is_dir() and any(final.iterdir()))
    if not fresh and not (final / SETTINGS).exists():
        raise ConfigError(f"masks.out: {final} holds files that are not a masks output; use an "
                          "empty or new folder")
    out = _staging(final, cfg) if fresh else final
    with folder_lock(out):
        _claim_output(out, cfg)
        tasks = plan_shards(items, cfg.shard_size, cfg.shard_max_bytes)
        _drop_beyond(out, cfg.split, len(tasks))
        todo = [t for t in tasks if not _is_done(out, cfg.split, t)]
        from pipeline.parallel import run_tasks

        run_tasks(process_shard, todo, dataclasses.replace(cfg, out=str(out)))
        rows, rejects = [], []
        for task in tasks:
            part = json.loads((out / PARTS / f"{_stem(cfg.split, task.index)}.json").read_text())
            rows += part["rows"]
            rejects += part["rejects"]
        write_table(rows, MANIFEST_SCHEMA, out / schema.MANIFEST)
        write_table(rejects, REJECTS_SCHEMA, out / schema.REJECTS)
        written = sum(1 for t in tasks if (out / schema.shard_name(cfg.split, t.index)).exists())
    if out != final:
        if final.is_dir():
            final.rmdir()  # empty: checked above
        os.replace(out, final)
    return MasksSummary(str(final), written, len(rows), len(rejects), len(tasks) - len(todo))


def _staging(final: Path, cfg: MasksParams) -> Path:
    """Where a new output folder is built: beside it, named by the settings that make it."""
    key = json.dumps([_settings(cfg), cfg.input], sort_keys=True).encode()
    return final.with_name(f".{final.name}.partial-{hashlib.sha1(key).hexdigest()[:10]}")


def _check_not_inside(out: Path, source: Path) -> None:
    """An output inside the input folder would be read as input by the next run."""
    if out.resolve().is_relative_to(source.resolve()):
        raise ConfigError(f"masks.out: {out} is inside masks.input {source}; choose a folder "
                          "outside it")


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` for the run; a second run into the folder is one line, not a mix."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{folder}: another masks run is writing this folder; wait for "
                              "it to finish or use another masks.out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def list_items(cfg: MasksParams) -> list[Item]:
    """Every input file under ``cfg.input`` (nested folders included), with its SA-1B JSON when
    the generator needs it. Non-image files are items too: they become rejects with a reason."""
    root = Path(cfg.input)
    try:
        paths = list_inputs(root)
    except FileNotFoundError:
        raise ConfigError(f"masks.input: folder not found: {root}") from None
    items, first = [], {}
    for path in paths:
        rel = path.relative_to(root).as_posix()
        annotation = path.with_suffix(".json") if needs_annotations(cfg) else None
        annotation = annotation if annotation is not None and annotation.exists() else None
        key = sample_key(rel, cfg.generator)
        duplicate_of = first.get(key)
        first.setdefault(key, rel)
        items.append(Item(key=key, image=str(path), source=rel,
                          annotation=str(annotation) if annotation else None,
                          duplicate_of=duplicate_of))
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
    samples, rows, rejects = [], [], []
    for item in task.items:
        try:
            if item.duplicate_of:
                raise BadInput(f"same key {item.key} as {item.duplicate_of}, kept there")
            image = load_image(item.image, cfg.max_side, cfg.max_pixels, cfg.min_side)
            masks = generator(item, image)
        except BadInput as exc:
            rejects.append({"key": item.key, "source": item.source, "reason": str(exc)})
            continue
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
    part = {"sources": [i.source for i in task.items],
            "inputs": [[[f.size, f.sha1] for f in _files(i)] for i in task.items],
            "rows": rows, "rejects": rejects}
    write_json(_mtime_path(out, cfg.split, task.index),
               {"mtimes": [[f.mtime for f in _files(i)] for i in task.items]}, indent=1)
    write_json(out / PARTS / f"{_stem(cfg.split, task.index)}.json", part, indent=1)
    if tmp_info is not None:
        os.replace(tmp_info.path, shard)
    return {"index": task.index, "written": len(rows), "rejected": len(rejects)}


@dataclass(frozen=True)
class InputFile:
    """What binds a finished shard to one input file: size and content hash, and the
    modification time that saves rehashing it when it is unchanged."""

    path: Path
    size: int
    mtime: int

    @property
    def sha1(self) -> str:
        """Hex digest of the content ('' for what cannot be read: such inputs are rejects)."""
        digest = hashlib.sha1()
        try:
            with open(self.path, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        except OSError:
            return ""
        return digest.hexdigest()


def _files(item: Item) -> list[InputFile]:
    """The image and annotation files of an item (a vanished file has size -1)."""
    files = []
    for name in (item.image, item.annotation):
        if name is not None:
            try:
                info = os.stat(name)
                files.append(InputFile(Path(name), info.st_size, info.st_mtime_ns))
            except OSError:
                files.append(InputFile(Path(name), -1, -1))
    return files


def _mtime_path(out: Path, split: str, index: int) -> Path:
    """Modification times of a shard's inputs: a hidden file (.dvcignore keeps it out of the
    output's hash, which must not depend on when the inputs were copied)."""
    return out / PARTS / f".{_stem(split, index)}.mtimes.json"


def _is_done(out: Path, split: str, task: ShardTask) -> bool:
    """A task is done when its part file lists the same inputs, each unchanged, and its tar
    matches the hash; a task whose inputs changed is done again, saying what changed."""
    part_path = out / PARTS / f"{_stem(split, task.index)}.json"
    if not part_path.exists():
        return False
    part = json.loads(part_path.read_text())
    mtimes = _mtime_path(out, split, task.index)
    change = _changed(part, task, json.loads(mtimes.read_text())["mtimes"]
                      if mtimes.exists() else None)
    if change:
        log.warning("%s: made again, its inputs changed (%s)",
                    schema.shard_name(split, task.index), change)
        return False
    if not part["rows"]:
        return True
    shard = out / schema.shard_name(split, task.index)
    if not shard.exists():
        return False
    if sha256_file(shard) != part["rows"][0]["shard_sha256"]:
        raise ConfigError(f"{shard}: sha256 differs from {part_path}; the shard was modified")
    return True


def _changed(part: dict, task: ShardTask, mtimes: list | None) -> str:
    """What differs between a finished shard's inputs and the task's now ('' = nothing): the
    file list, a size, or (where the modification time moved) the content hash."""
    sources = [i.source for i in task.items]
    if part["sources"] != sources:
        gone = sorted(set(part["sources"]) - set(sources))
        new = sorted(set(sources) - set(part["sources"]))
        return ", ".join([*(f"{s} removed" for s in gone[:2]), *(f"{s} added" for s in new[:2])]
                         ) or "inputs reordered"
    if "inputs" not in part:
        return "written by an older version"
    seen = mtimes or [[None] * len(f) for f in part["inputs"]]
    for item, was, times in zip(task.items, part["inputs"], seen, strict=True):
        now = _files(item)
        if len(now) != len(was):
            return f"{item.source}: its annotation file came or went"
        for file, (size, sha1), mtime in zip(now, was, times, strict=True):
            if file.size != size:
                return f"{file.path.name}: size differs"
            if file.mtime != mtime and file.sha1 != sha1:
                return f"{file.path.name}: content differs"
    return ""


def _drop_beyond(out: Path, split: str, count: int) -> None:
    """Remove shards and part files past the plan (the input list got shorter)."""
    parts = (out / PARTS).glob(f"*{split}-*.json")
    for path in [*out.glob(f"{split}-*.tar"), *parts]:
        match = schema.SHARD_RE.match(path.name.lstrip(".").split(".")[0] + ".tar")
        if match and int(match.group("index")) >= count:
            log.warning("%s: removed, past the %d shards the inputs now make", path.name, count)
            path.unlink()


def _settings(cfg: MasksParams) -> dict:
    """What the shards' content depends on (not where the folders are, nor how it is run)."""
    skip = ("input", "out", "workers", "scheduler", "device", "sam", "sam2", "dino", "superpixel")
    settings = {k: v for k, v in to_dict(cfg).items() if k not in skip}
    settings["generator_params"] = generator_params(cfg)
    return settings


def _claim_output(out: Path, cfg: MasksParams) -> None:
    """Create ``out`` or check that its finished shards were made with the same settings.

    Settings bind a folder only once a shard task has finished: a run that failed before
    (a missing checkpoint, say) leaves nothing to protect, so a corrected rerun may proceed.
    """
    settings = _settings(cfg)
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
    write_json(path, settings, indent=1)


def _stem(split: str, index: int) -> str:
    return schema.shard_name(split, index).removesuffix(".tar")


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
