"""Atomic shard writing: ``*.tar.tmp`` → fsync → rename, so a reader never sees half a shard."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from files import atomic_path

# A fixed mtime makes tars byte-identical across reruns (resume == uninterrupted run).
_MTIME = 0.0


@dataclass(frozen=True)
class ShardInfo:
    path: str
    count: int
    bytes: int
    sha256: str


def write_shard(path: str | Path, samples: Iterable[dict]) -> ShardInfo:
    """Write webdataset samples (dicts of ``__key__`` and ext → bytes) to ``path`` atomically.

    An existing ``path`` is never overwritten: deciding to skip or replace a shard is the
    caller's job.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: shard exists; refusing to overwrite")
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        writer = wds.TarWriter(stream, mtime=_MTIME)
        for sample in samples:
            writer.write(sample)
            count += 1
        writer.close()
    return ShardInfo(str(path), count, path.stat().st_size, sha256_file(path))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
