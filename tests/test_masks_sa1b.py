import json
import shutil
from pathlib import Path

import pytest

from config import ConfigError, MasksParams
from pipeline import masks as masks_stage
from shards import schema
from shards.manifest import read_table
from shards.reader import list_shards, sample_pipeline
from shards.verify import verify_dir


def _cfg(src, out, **kw) -> MasksParams:
    return MasksParams(input=str(src), out=str(out), shard_size=5, **kw)


def test_ingest_writes_verified_shards_manifest_and_rejects(shard_dir, synth_root):
    assert verify_dir(shard_dir) == []
    assert [p.split("/")[-1] for p in list_shards(shard_dir)] == [
        "train-000000.tar", "train-000001.tar", "train-000002.tar"]
    rows = read_table(shard_dir / schema.MANIFEST)
    assert len(rows) == 12 and rows[0]["key"] == "sa_000000"
    assert read_table(shard_dir / schema.REJECTS) == []
    sample = next(iter(sample_pipeline(list_shards(shard_dir), split=False)))
    source = json.loads((synth_root / "train" / "images" / "sa_000000.json").read_text())
    assert sample["masks"].shape == (len(source["annotations"]), 64, 64)
    assert sample["record"]["generator"]["name"] == "sa1b"


def test_resumed_run_equals_uninterrupted(synth_root, tmp_path, monkeypatch):
    src = synth_root / "train" / "images"
    full = tmp_path / "full"
    masks_stage.run(_cfg(src, full))

    resumed = tmp_path / "resumed"
    calls = {"n": 0}
    real = masks_stage.process_shard

    def dies_on_second_shard(task, cfg):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the stage is killed mid-run
        return real(task, cfg)

    monkeypatch.setattr(masks_stage, "process_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        masks_stage.run(_cfg(src, resumed))
    monkeypatch.setattr(masks_stage, "process_shard", real)
    assert len(list_shards(resumed)) == 1
    summary = masks_stage.run(_cfg(src, resumed))
    assert summary.skipped_shards == 1 and summary.written == 12
    for a, b in zip(list_shards(full), list_shards(resumed), strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    assert read_table(full / schema.MANIFEST) == read_table(resumed / schema.MANIFEST)


def test_bad_inputs_are_rejected_with_reasons(synth_root, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(synth_root / "train" / "images", src)
    (src / "sa_000001.json").unlink()
    (src / "sa_000002.json").write_text("{broken")
    (src / "sa_000003.png").write_bytes(b"not a png")
    for key, counts, resized in (("sa_000004", "100000", 0), ("sa_000005", "5", 32)):
        ann = json.loads((src / f"{key}.json").read_text())  # runs that cover too few pixels:
        ann["annotations"][0]["segmentation"]["counts"] = counts  # pycocotools would overrun
        (src / f"{key}.json").write_text(json.dumps(ann))
        if resized:  # the same check on the path that resizes masks
            summary = masks_stage.run(_cfg(src, tmp_path / "small", max_side=resized))
            small = {r["key"]: r["reason"] for r in read_table(tmp_path / "small" / schema.REJECTS)}
            assert "counts cover 5 pixels, expected 4096" in small[key]
    summary = masks_stage.run(_cfg(src, tmp_path / "out"))
    assert (summary.written, summary.rejected) == (7, 5)
    reasons = {r["key"]: r["reason"] for r in read_table(tmp_path / "out" / schema.REJECTS)}
    assert "no SA-1B annotation JSON" in reasons["sa_000001"]
    assert "unreadable annotation JSON" in reasons["sa_000002"]
    assert "not an image" in reasons["sa_000003"]
    assert "annotation does not match the image: RLE 0: counts cover 1 pixels" in reasons[
        "sa_000004"]
    assert verify_dir(tmp_path / "out") == []


def test_resize_keeps_masks_aligned(synth_root, tmp_path):
    masks_stage.run(_cfg(synth_root / "train" / "images", tmp_path / "s", max_side=32))
    for sample in sample_pipeline(list_shards(tmp_path / "s"), split=False):
        assert sample["image"].shape == (32, 32, 3) and sample["masks"].shape[1:] == (32, 32)
        assert sample["masks"].any(axis=(1, 2)).all()


def test_other_settings_in_same_out_is_an_error_not_an_overwrite(synth_root, tmp_path):
    src = synth_root / "train" / "images"
    masks_stage.run(_cfg(src, tmp_path / "s"))
    before = {p: Path(p).read_bytes() for p in list_shards(tmp_path / "s")}
    with pytest.raises(ConfigError, match="shard_size"):
        masks_stage.run(MasksParams(input=str(src), out=str(tmp_path / "s"), shard_size=4))
    assert before == {p: Path(p).read_bytes() for p in list_shards(tmp_path / "s")}


def test_failed_run_before_any_shard_does_not_bind_the_folder(synth_root, tmp_path):
    src = synth_root / "train" / "images"
    with pytest.raises(ConfigError, match="masks.sam.checkpoint"):
        masks_stage.run(_cfg(src, tmp_path / "s", generator="sam"))
    assert masks_stage.run(_cfg(src, tmp_path / "s")).written == 12


def test_missing_input_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="masks.input"):
        masks_stage.run(_cfg(tmp_path / "nope", tmp_path / "out"))
