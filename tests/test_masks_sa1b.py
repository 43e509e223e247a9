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


def test_changed_input_is_made_again_and_a_shorter_input_list_drops_stale_shards(
        synth_root, tmp_path, caplog):
    """Finished shards are bound to their inputs' size and mtime, not to the file names."""
    import os

    src = tmp_path / "src"
    shutil.copytree(synth_root / "train" / "images", src)
    out = tmp_path / "out"
    masks_stage.run(_cfg(src, out))
    first = {p: Path(p).read_bytes() for p in list_shards(out)}
    ann = json.loads((src / "sa_000006.json").read_text())
    ann["annotations"] = ann["annotations"][:1]
    (src / "sa_000006.json").write_text(json.dumps(ann))
    os.utime(src / "sa_000006.json", ns=(1, 1))
    summary = masks_stage.run(_cfg(src, out))
    assert summary.skipped_shards == 2 and "sa_000006.json: size differs" in caplog.text
    image = bytearray((src / "sa_000010.png").read_bytes())
    image[-20] ^= 1  # same size, another content (a broken PNG: it becomes a reject)
    (src / "sa_000010.png").write_bytes(bytes(image))
    os.utime(src / "sa_000002.png", ns=(5, 5))  # touched, not changed: kept
    summary = masks_stage.run(_cfg(src, out))
    assert summary.skipped_shards == 2 and "sa_000010.png: content differs" in caplog.text
    assert "sa_000002" not in caplog.text
    (src / "sa_000010.png").write_bytes((synth_root / "train/images/sa_000010.png").read_bytes())
    masks_stage.run(_cfg(src, out))
    changed = [Path(p).name for p in list_shards(out) if Path(p).read_bytes() != first[p]]
    assert changed == ["train-000001.tar"]
    rows = {r["key"]: r for r in read_table(out / schema.MANIFEST)}
    assert rows["sa_000006"]["num_masks"] == 1
    for path in sorted(src.glob("sa_00001*")):  # 12 → 10 images: 2 shards
        path.unlink()
    summary = masks_stage.run(_cfg(src, out))
    assert summary.written == 10 and len(list_shards(out)) == 2
    assert verify_dir(out) == []


def test_a_second_run_into_a_locked_folder_and_an_output_inside_the_input_are_refused(
        synth_root, tmp_path):
    src = synth_root / "train" / "images"
    out = tmp_path / "out"
    masks_stage.run(_cfg(src, out))
    with masks_stage.folder_lock(out), pytest.raises(ConfigError, match="another masks run"):
        masks_stage.run(_cfg(src, out))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("someone else's folder")
    with pytest.raises(ConfigError, match="masks.out: .*other holds files that are not"):
        masks_stage.run(_cfg(src, other))
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    with pytest.raises(ConfigError, match="masks.out: .* is inside masks.input"):
        masks_stage.run(_cfg(copy, copy / "shards"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        masks_stage.run(_cfg(src, tmp_path / "file"))


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


def _write_sa1b(folder: Path, stem: str, image, masks, exif_orientation: int = 1,
                **fields) -> None:
    """An SA-1B pair: ``stem.png`` (with an EXIF orientation tag) and ``stem.json``."""
    import numpy as np
    from PIL import Image

    from shards import rle

    folder.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if exif_orientation != 1:
        exif[0x0112] = exif_orientation
    Image.fromarray(image).save(folder / f"{stem}.png", exif=exif)
    anns = [{"segmentation": r, "area": int(np.asarray(m).sum()), **fields}
            for r, m in zip(rle.encode(np.asarray(masks)), masks, strict=True)]
    (folder / f"{stem}.json").write_text(json.dumps({"annotations": anns}))


@pytest.mark.parametrize("count", [300, 5000])
def test_images_with_hundreds_and_thousands_of_masks_are_ingested(tmp_path, count):
    """pycocotools' area() overflows from 256 masks under numpy 2; areas come from the runs."""
    import numpy as np

    rng = np.random.default_rng(count)
    height, width = 80, 100
    masks = np.zeros((count, height, width), bool)
    for m in masks:
        y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
        m[y:y + rng.integers(1, 5), x:x + rng.integers(1, 5)] = True
    _write_sa1b(tmp_path / "src", "sa_1", np.zeros((height, width, 3), np.uint8), masks)
    summary = masks_stage.run(_cfg(tmp_path / "src", tmp_path / "out"))
    assert (summary.written, summary.rejected) == (1, 0)
    (sample,) = sample_pipeline(list_shards(tmp_path / "out"), split=False)
    record = sample["record"]["annotations"]
    assert len(record) == count and np.array_equal(sample["masks"], masks)
    assert [a["area"] for a in record] == masks.sum(axis=(1, 2)).tolist()
    assert read_table(tmp_path / "out" / schema.MANIFEST)[0]["num_masks"] == count


def test_sa1b_scores_that_are_not_numbers_are_rejects_naming_the_field(tmp_path):
    import numpy as np

    image = np.zeros((20, 30, 3), np.uint8)
    masks = np.ones((2, 20, 30), bool)
    for stem, value in (("sa_1", "high"), ("sa_2", None), ("sa_3", float("nan")), ("sa_4", 0.9)):
        _write_sa1b(tmp_path / "src", stem, image, masks, predicted_iou=value)
    summary = masks_stage.run(_cfg(tmp_path / "src", tmp_path / "out"))
    assert (summary.written, summary.rejected) == (1, 3)
    reasons = {r["key"]: r["reason"] for r in read_table(tmp_path / "out" / schema.REJECTS)}
    assert reasons["sa_1"] == "annotation 0: predicted_iou is 'high', not a finite number"
    assert "predicted_iou is None" in reasons["sa_2"] and "nan" in reasons["sa_3"]
    (sample,) = sample_pipeline(list_shards(tmp_path / "out"), split=False)
    assert [a["predicted_iou"] for a in sample["record"]["annotations"]] == [0.9, 0.9]


def test_exif_rotated_images_keep_their_masks_aligned(tmp_path):
    """A mask on the red square of the stored pixels covers the red square of the image as
    stored in the shard (turned as EXIF says); where the masks' size cannot tell (a 180° turn),
    the image is rejected with the reason."""
    import numpy as np

    image = np.zeros((20, 30, 3), np.uint8)
    image[2:8, 3:12] = (255, 0, 0)
    mask = np.zeros((1, 20, 30), bool)
    mask[0, 2:8, 3:12] = True
    _write_sa1b(tmp_path / "src", "sa_1", image, mask, exif_orientation=6)  # 90° clockwise
    _write_sa1b(tmp_path / "src", "sa_2", image, mask, exif_orientation=3)  # 180°
    summary = masks_stage.run(_cfg(tmp_path / "src", tmp_path / "out"))
    assert (summary.written, summary.rejected) == (1, 1)
    (sample,) = sample_pipeline(list_shards(tmp_path / "out"), split=False)
    assert sample["image"].shape == (30, 20, 3)
    red = (sample["image"][..., 0] > 200) & (sample["image"][..., 1] < 50)
    assert np.array_equal(sample["masks"][0], red)
    (reject,) = read_table(tmp_path / "out" / schema.REJECTS)
    assert reject["key"] == "sa_2" and "EXIF orientation 3" in reject["reason"]


def test_shards_are_cut_by_count_and_by_source_bytes(tmp_path):
    """``shard_size`` and ``shard_max_bytes`` both close a shard; a file larger than the byte
    budget gets a shard of its own."""
    from pipeline.generators import Item

    sizes = [400, 400, 400, 1500, 100, 100, 100, 100]
    items = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"{i}.png"
        path.write_bytes(b"x" * size)
        items.append(Item(key=str(i), image=str(path), source=path.name))
    tasks = masks_stage.plan_shards(items, shard_size=3, max_bytes=1000)
    assert [[int(i.key) for i in t.items] for t in tasks] == [[0, 1], [2], [3], [4, 5, 6], [7]]
    assert [t.index for t in tasks] == list(range(5))
