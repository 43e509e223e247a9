"""``shards verify``: every tar readable, every sample complete, every RLE the image's size."""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path

from shards import schema
from shards.manifest import read_table
from shards.reader import decode_sample, list_shards
from shards.writer import sha256_file


def verify_shard(path: str | Path) -> tuple[list[str], list[str]]:
    """Check one shard; returns ``(problems, keys)`` with one line per problem."""
    path = Path(path)
    try:
        samples = _read_tar(path)
    except (tarfile.TarError, OSError, EOFError) as exc:
        return [f"{path}: unreadable tar ({exc})"], []
    if not samples:
        return [f"{path}: no samples"], []
    problems = []
    for key, sample in samples.items():
        try:
            decode_sample(sample)
        except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
            problems.append(f"{path}: {_strip_key(str(exc), key)}")
    return problems, list(samples)


def verify_dir(directory: str | Path) -> list[str]:
    """Check every shard of a directory and, if present, its manifest; one line per problem."""
    directory = Path(directory)
    try:
        shards = list_shards(directory)
    except FileNotFoundError as exc:
        return [str(exc)]
    if not shards:
        return [f"{directory}: no shards ({schema.SHARD_PATTERN})"]
    problems: list[str] = []
    keys_by_shard: dict[str, list[str]] = {}
    for shard in shards:
        shard_problems, keys = verify_shard(shard)
        problems += shard_problems
        keys_by_shard[Path(shard).name] = keys
    manifest = directory / schema.MANIFEST
    if manifest.exists():
        problems += _check_manifest(manifest, directory, keys_by_shard)
    return problems


def _check_manifest(manifest: Path, directory: Path, keys_by_shard: dict) -> list[str]:
    rows = read_table(manifest)
    problems = []
    expected: dict[str, set[str]] = defaultdict(set)
    sha: dict[str, str] = {}
    for row in rows:
        expected[row["shard"]].add(row["key"])
        sha[row["shard"]] = row["shard_sha256"]
    for shard in sorted(set(expected) | set(keys_by_shard)):
        if shard not in keys_by_shard:
            problems.append(f"{directory / shard}: listed in {manifest.name} but missing")
        elif shard not in expected:
            problems.append(f"{directory / shard}: not listed in {manifest.name}")
        elif set(keys_by_shard[shard]) != expected[shard]:
            problems.append(f"{directory / shard}: keys differ from {manifest.name}")
        elif sha256_file(directory / shard) != sha[shard]:
            problems.append(f"{directory / shard}: sha256 differs from {manifest.name}")
    return problems


def _read_tar(path: Path) -> dict[str, dict]:
    """Group tar members into samples the way webdataset does (key = name up to first dot)."""
    samples: dict[str, dict] = defaultdict(dict)
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = Path(member.name).name
            key, _, ext = name.partition(".")
            data = tar.extractfile(member).read()
            samples[key]["__key__"] = key
            samples[key][ext] = data
    return dict(samples)


def _strip_key(message: str, key: str) -> str:
    return message if message.startswith(f"sample {key}") else f"sample {key}: {message}"
