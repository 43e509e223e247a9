"""Writing files so that a reader never sees half of one: a temp file beside the target,
flushed to disk, then renamed over it (and the folder entry flushed too)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside ``path`` to write; when the block ends without error it is synced
    and renamed over ``path``, otherwise removed. Folders are created as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def load_tensors(path: str | os.PathLike, key: str, what: str = "weights file") -> Any:
    """``torch.load`` of a file the user named, onto the CPU, tensors and plain values only;
    anything unreadable (garbage, a pickle that would run code) is one line naming ``key``."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many kinds on bad bytes
        raise ValueError(f"{key}: {path} is not a readable {what} ({first_line(exc)})") from None


def first_line(exc: BaseException, limit: int = 160) -> str:
    """An exception's message cut to its first line (its type's name if it has none), for a
    one-line error that names the user's file."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
