"""Parquet manifest (one row per written sample) and rejects list (one row per bad input)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from files import atomic_path

MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source", pa.string()),
        ("shard", pa.string()),
        ("num_masks", pa.int32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("shard_sha256", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema([("key", pa.string()), ("source", pa.string()), ("reason", pa.string())])


def write_table(rows: list[dict], schema: pa.Schema, path: str | Path) -> None:
    """Write rows to parquet atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)


def read_table(path: str | Path) -> list[dict]:
    return pq.read_table(path).to_pylist()
