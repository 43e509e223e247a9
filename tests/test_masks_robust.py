"""Any image folder in, shards out: odd formats convert, bad files become rejects, exit 0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from pipeline.images import BadInput, list_inputs, load_image
from shards import schema
from shards.manifest import read_table
from shards.verify import verify_dir
from tests.masks_testdata import write_bad_files, write_images, write_odd_but_valid


def test_bad_files_get_a_reason(tmp_path: Path) -> None:
    expected = write_bad_files(tmp_path)
    for name, word in expected.items():
        with pytest.raises(BadInput, match=word):
            load_image(tmp_path / name, min_side=8)


def test_odd_images_become_rgb_uint8(tmp_path: Path) -> None:
    sizes = write_odd_but_valid(tmp_path)
    for name, size in sizes.items():
        image = load_image(tmp_path / name)
        assert image.rgb.shape == (*size, 3) and image.rgb.dtype.name == "uint8", name
        assert image.ext in schema.IMAGE_EXTS


def test_resize_to_max_side(tmp_path: Path) -> None:
    (path,) = write_images(tmp_path, 1)
    image = load_image(path, max_side=48)
    assert image.rgb.shape == (36, 48, 3) and image.source_size == (72, 96)


def test_sidecars_and_hidden_files_are_not_inputs(tmp_path: Path) -> None:
    (image,) = write_images(tmp_path, 1)
    image.with_suffix(".json").write_text("{}")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "readme.md").write_text("hi")
    assert [p.name for p in list_inputs(tmp_path)] == ["img_000.png", "readme.md"]


def test_cli_bad_folder_exits_0_with_rejects(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_images(folder, 4)
    write_odd_but_valid(folder / "odd")
    bad = write_bad_files(folder / "bad")
    out = tmp_path / "out"
    args = ["masks", "--generator", "superpixel", "--input", str(folder), "--out", str(out),
            "--shard-size", "3", "--set", "masks.device=cpu",
            "--set", "masks.superpixel.work_side=96"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"9 written, 7 rejected", result.output), result.output

    rejects = {Path(r["source"]).name: r["reason"] for r in read_table(out / schema.REJECTS)}
    assert set(rejects) == set(bad)
    for name, word in bad.items():
        assert word in rejects[name], (name, rejects[name])
    manifest = read_table(out / schema.MANIFEST)
    assert len(manifest) == 9 and all(row["num_masks"] > 0 for row in manifest)
    assert verify_dir(out) == []

    before = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "6 already done" in again.output, again.output  # 16 inputs / 3 per shard
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == before
