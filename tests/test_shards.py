import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from shards import schema
from shards.reader import list_shards, sample_pipeline
from shards.verify import verify_dir
from shards.writer import write_shard


def _png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _sample(key: str, h: int = 12, w: int = 20, seed: int = 0, **replace) -> dict:
    masks = np.random.default_rng(seed).random((3, h, w)) < 0.4
    record = schema.make_record(masks, f"{key}.png", schema.Generator("test", {"a": 1}))
    sample = {"__key__": key, "png": _png(h, w), schema.MASKS_EXT: schema.encode_record(record)}
    sample.update(replace)
    return {k: v for k, v in sample.items() if v is not None}


def _masks_of(seed: int, h: int = 12, w: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).random((3, h, w)) < 0.4


def test_written_shard_reads_back_with_reader_and_plain_tarfile(tmp_path):
    path = tmp_path / schema.shard_name("train", 0)
    info = write_shard(path, [_sample("a", seed=1), _sample("b", seed=2)])
    assert info.count == 2 and path.exists() and not list(tmp_path.glob("*.tmp"))

    read = {s["key"]: s for s in sample_pipeline(list_shards(tmp_path), split=False)}
    np.testing.assert_array_equal(read["a"]["masks"], _masks_of(1))
    assert read["b"]["image"].shape == (12, 20, 3) and read["b"]["image"].flags.writeable

    with tarfile.open(path) as tar:
        record = json.loads(tar.extractfile("b.masks.json").read())
    rles = [{"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}
            for a in record["annotations"]]
    plain = mask_utils.decode(rles).transpose(2, 0, 1).astype(bool)
    np.testing.assert_array_equal(plain, read["b"]["masks"])
    assert record["generator"] == {"name": "test", "params": {"a": 1}, "version": "1"}
    assert record["annotations"][0]["bbox"] == mask_utils.toBbox(rles[0]).tolist()


def test_writer_refuses_to_overwrite(tmp_path):
    path = tmp_path / "train-000000.tar"
    write_shard(path, [_sample("a")])
    with pytest.raises(FileExistsError):
        write_shard(path, [_sample("b")])


def test_verify_accepts_good_and_names_each_problem(tmp_path):
    write_shard(tmp_path / "train-000000.tar", [_sample("good")])
    assert verify_dir(tmp_path) == []

    write_shard(tmp_path / "train-000001.tar", [_sample("nomasks", **{schema.MASKS_EXT: None})])
    bad_record = json.loads(_sample("x")[schema.MASKS_EXT])
    bad_record["annotations"][0]["segmentation"]["size"] = [5, 5]
    write_shard(tmp_path / "train-000002.tar",
                [_sample("wrongsize", **{schema.MASKS_EXT: json.dumps(bad_record).encode()})])
    full = tmp_path / "train-000000.tar"
    (tmp_path / "train-000003.tar").write_bytes(full.read_bytes()[:700])  # truncated mid-member

    problems = verify_dir(tmp_path)
    assert len(problems) == 3, problems
    assert "train-000001.tar: sample nomasks: no masks.json" in problems[0]
    assert "train-000002.tar: sample wrongsize" in problems[1] and "size" in problems[1]
    assert "train-000003.tar: unreadable tar" in problems[2]


def test_verify_empty_or_missing_folder(tmp_path):
    assert "no shards" in verify_dir(tmp_path)[0]
    assert "not found" in verify_dir(tmp_path / "nope")[0]


def test_reader_skips_and_counts_bad_samples(tmp_path):
    from shards.reader import SkipCounter

    write_shard(tmp_path / "train-000000.tar",
                [_sample("a"), _sample("b", **{schema.MASKS_EXT: b"{not json"}), _sample("c")])
    counter = SkipCounter()
    keys = [s["key"] for s in sample_pipeline(list_shards(tmp_path), split=False, handler=counter)]
    assert keys == ["a", "c"] and counter.count == 1
