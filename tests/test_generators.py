"""Each mask generator on a few small images: superpixel, SAM (tiny, random), DINO (random)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator

from config import ConfigError, DinoParams, SamParams, SuperpixelParams
from pipeline import masks
from pipeline.generators import Item, build_generator
from pipeline.generators import sam as sam_module
from pipeline.generators.dino import DinoGenerator, kmeans, load_dino
from pipeline.generators.regions import clean_labels, drop_small, labels_to_masks, merge_small
from pipeline.generators.sam import FastAmg, SamGenerator, build_random_sam, masks_to_coco_rle
from pipeline.generators.superpixel import SuperpixelGenerator
from pipeline.images import load_image
from shards import rle as rle_codec
from shards import schema
from shards.manifest import read_table
from shards.verify import verify_dir
from tests.masks_testdata import (
    TINY_DINO,
    TINY_SAM,
    TINY_SAM2,
    masks_params,
    scene,
    write_images,
)


def decode(maskset, height: int, width: int) -> np.ndarray:
    return rle_codec.decode(maskset.rles, height, width)


def check_run(tmp_path: Path, **overrides) -> list[dict]:
    """Run the masks stage over 3 images; shards verify, every image has masks."""
    write_images(tmp_path / "in", 3)
    summary = masks.run(masks_params(tmp_path / "in", tmp_path / "out", **overrides))
    assert (summary.written, summary.rejected) == (3, 0)
    assert verify_dir(tmp_path / "out") == []
    rows = read_table(tmp_path / "out" / schema.MANIFEST)
    assert all(row["num_masks"] > 0 for row in rows)
    return rows


# ----------------------------------------------------------------------------- regions


def test_merge_small_joins_fragments_to_neighbours() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[:, 5:] = 1
    labels[2, 2] = 2  # a one-pixel fragment inside region 0
    merged = merge_small(labels, min_area=3)
    assert set(np.unique(merged)) == {0, 1} and merged[2, 2] == merged[0, 0]
    dropped = drop_small(labels, min_area=3)
    assert dropped[2, 2] == -1 and set(np.unique(dropped)) == {-1, 0, 1}


def test_split_components_gives_each_piece_a_mask() -> None:
    labels = np.zeros((8, 8), np.int32)
    labels[:, 2] = 1  # region 0 is cut in two by a column of region 1
    result = labels_to_masks(clean_labels(labels, 1, "merge", split=True))
    assert len(result.rles) == 3 and sorted(rle_codec.area(result.rles)) == [8, 16, 40]


# ----------------------------------------------------------------------------- superpixel


@pytest.mark.parametrize("method", ["felzenszwalb", "slic"])
def test_superpixel_masks_cover_the_image(method: str) -> None:
    params = SuperpixelParams(method=method, levels=2, n_segments=30)
    generator = SuperpixelGenerator(params)
    for seed in range(3):
        rgb = scene(seed)
        image = load_image_from(rgb)
        result = generator(Item("k", "x.png", "x.png"), image)
        stack = decode(result, *rgb.shape[:2])
        assert len(stack) >= 2
        assert stack.any(axis=0).all()  # merge mode: every pixel is in some mask
        assert min(rle_codec.area(result.rles)) >= params.min_area_frac * stack[0].size
        again = generator(Item("k", "x.png", "x.png"), image)
        assert [r["counts"] for r in again.rles] == [r["counts"] for r in result.rles]


def test_superpixel_bad_method_names_the_key() -> None:
    with pytest.raises(ConfigError, match="masks.superpixel.method"):
        SuperpixelGenerator(SuperpixelParams(method="watershed"))


def test_superpixel_run_end_to_end(tmp_path: Path) -> None:
    rows = check_run(tmp_path)
    assert {row["height"] for row in rows} == {72}


# ----------------------------------------------------------------------------- SAM


def test_fast_rle_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    stack = rng.random((5, 13, 17)) > 0.5
    stack[1] = True
    stack[2] = False
    assert masks_to_coco_rle(torch.as_tensor(stack)) == rle_codec.encode(stack)


@pytest.mark.parametrize("extra", [{}, {"crop_n_layers": 1, "crop_n_points_downscale_factor": 2,
                                             "min_mask_region_area": 20}])
def test_fast_amg_equals_stock_amg_in_fp32(extra: dict) -> None:
    params = SamParams(**{**TINY_SAM.__dict__, **extra})
    model = build_random_sam("tiny")
    rgb = scene(1, 96, 128)
    knobs = {k: getattr(params, k) for k in (
        "points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
        "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
        "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area")}
    stock = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **knobs).generate(rgb)
    fast = FastAmg(model, params).generate(rgb)
    assert len(stock) > 0
    assert [r["counts"] for r in fast.rles] == [a["segmentation"]["counts"] for a in stock]
    assert fast.predicted_iou == pytest.approx([a["predicted_iou"] for a in stock])
    assert fast.stability_score == pytest.approx([a["stability_score"] for a in stock])


def test_sam_run_end_to_end(tmp_path: Path) -> None:
    check_run(tmp_path, generator="sam", sam=TINY_SAM)


def test_sam_missing_checkpoint_names_key_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="masks.sam.checkpoint is empty"):
        SamGenerator(SamParams(model_type="vit_b"), "cpu")
    missing = tmp_path / "sam_vit_b.pth"
    with pytest.raises(ConfigError, match=f"masks.sam.checkpoint: file not found: {missing}"):
        SamGenerator(SamParams(model_type="vit_b", checkpoint=str(missing)), "cpu")
    with pytest.raises(ConfigError, match="tests only"):
        SamGenerator(SamParams(model_type="tiny", checkpoint=str(missing)), "cpu")


def test_sam_loads_a_checkpoint_file(tmp_path: Path, monkeypatch) -> None:
    """The real loading path, with the tiny architecture standing in for vit_b."""
    monkeypatch.setitem(sam_module.sam_model_registry, "vit_b",
                        lambda checkpoint=None: sam_module.build_tiny_sam())
    source = build_random_sam("tiny", seed=3)
    path = tmp_path / "sam.pth"
    torch.save(source.state_dict(), path)
    loaded = sam_module.load_sam(SamParams(model_type="vit_b", checkpoint=str(path)))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.save({"nope": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="does not fit model_type 'vit_b'"):
        sam_module.load_sam(SamParams(model_type="vit_b", checkpoint=str(path)))


# ----------------------------------------------------------------------------- DINO


@pytest.fixture(scope="module")
def dino() -> DinoGenerator:
    return DinoGenerator(TINY_DINO, "cpu")


def test_dino_masks_at_image_resolution(dino: DinoGenerator) -> None:
    for seed in range(3):
        rgb = scene(seed, 72, 96)
        result = dino.masks(rgb)
        stack = decode(result, 72, 96)
        assert len(stack) >= 2 and stack.any(axis=0).all()
        assert not (stack.sum(axis=0) > 1).any()  # a partition: clusters do not overlap
        assert min(rle_codec.area(result.rles)) >= TINY_DINO.min_area_frac * 72 * 96
        assert [r["counts"] for r in dino.masks(rgb).rles] == [r["counts"] for r in result.rles]


def test_dino_loads_an_official_style_checkpoint(dino: DinoGenerator, tmp_path: Path) -> None:
    state = {f"backbone.{k}": v for k, v in dino.model.state_dict().items()}
    path = tmp_path / "dino_deitsmall8.pth"
    torch.save({"teacher": state, "epoch": 1}, path)
    params = DinoParams(**{**TINY_DINO.__dict__, "checkpoint": str(path), "seed": 9})
    loaded = load_dino(params)
    for key, value in dino.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("name", ["vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2"])
def test_dinov2_with_registers_patch_14_and_any_input_size(name: str, tmp_path: Path) -> None:
    """DINOv2 towers (timm, random weights): a patch-14 grid of the input sized to a multiple of
    14, register tokens dropped with the class token, and the official checkpoint layout
    (``register_tokens``, ``mask_token``, class position in ``pos_embed``) loads."""
    params = DinoParams(model=name, checkpoint="random", input_size=140, clusters=4)
    gen = DinoGenerator(params, "cpu")
    assert gen.model.num_prefix_tokens == (5 if "reg4" in name else 1)
    for height, width, grid in ((100, 150, (7, 10)), (64, 64, (10, 10)), (90, 33, (10, 4))):
        rgb = scene(1, height, width)
        assert tuple(gen.patch_features(rgb).shape) == (*grid, 384)
        stack = decode(gen.masks(rgb), height, width)
        assert len(stack) >= 2 and stack.any(axis=0).all()
    state = {("register_tokens" if k == "reg_token" else k): v.clone()
             for k, v in gen.model.state_dict().items()}
    if "reg4" in name:
        state["pos_embed"] = torch.cat([torch.zeros(1, 1, 384), state["pos_embed"]], dim=1)
    state["mask_token"] = torch.zeros(1, 384)
    torch.save(state, tmp_path / "dinov2.pth")
    loaded = load_dino(DinoParams(model=name, checkpoint=str(tmp_path / "dinov2.pth"), seed=3))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in gen.model.state_dict().items())


def test_dino_missing_checkpoint_names_key_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="masks.dino.checkpoint is empty"):
        load_dino(DinoParams())
    missing = tmp_path / "dino.pth"
    with pytest.raises(ConfigError, match=f"masks.dino.checkpoint: file not found: {missing}"):
        load_dino(DinoParams(checkpoint=str(missing)))


def test_kmeans_finds_separated_clusters() -> None:
    points = torch.cat([torch.randn(50, 3) * 0.05 + c for c in (0.0, 5.0, -5.0)])
    centroids = kmeans(points, 3, 20, torch.Generator().manual_seed(0))
    assert sorted(round(float(c.mean())) for c in centroids) == [-5, 0, 5]


def test_dino_run_end_to_end(tmp_path: Path) -> None:
    check_run(tmp_path, generator="dino", dino=TINY_DINO)


def test_registry_knows_every_generator() -> None:
    cfg = masks_params(Path("."), Path("."))
    assert isinstance(build_generator(cfg), SuperpixelGenerator)
    with pytest.raises(ConfigError, match="masks.sam.checkpoint"):
        build_generator(masks_params(Path("."), Path("."), generator="sam"))


def load_image_from(rgb: np.ndarray):
    """A LoadedImage for an in-memory array (through a PNG, like the stage does)."""
    import tempfile

    from PIL import Image

    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        Image.fromarray(rgb).save(f.name)
        return load_image(f.name)


# ----------------------------------------------------------------------------- SAM 2.1


def test_sam2_missing_checkpoint_names_key_and_path(tmp_path: Path) -> None:
    from config import Sam2Params
    from pipeline.generators.sam2 import load_sam2

    with pytest.raises(ConfigError, match="masks.sam2.checkpoint is empty"):
        load_sam2(Sam2Params(), torch.device("cpu"))
    missing = tmp_path / "sam2.1_hiera_large.pt"
    with pytest.raises(ConfigError, match=f"masks.sam2.checkpoint: file not found: {missing}"):
        load_sam2(Sam2Params(checkpoint=str(missing)), torch.device("cpu"))


@pytest.mark.slow
def test_sam2_fast_amg_equals_stock_amg_in_fp32_and_runs_the_stage(tmp_path: Path) -> None:
    """Random hiera-t (SAM 2.1), a 4×4 point grid, NMS off so that every mask is compared:
    the same masks, predicted IoUs and stability scores as SAM2AutomaticMaskGenerator, with
    and without the filters; then the masks stage with ``--generator sam2``."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from config import Sam2Params
    from pipeline.generators.sam2 import FastSam2Amg, amg_settings, load_sam2

    base = dataclasses.replace(TINY_SAM2, points_per_batch=6, box_nms_thresh=1.0)
    model = load_sam2(base, torch.device("cpu"))
    rgb = scene(3, 96, 128)
    for extra in ({}, {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.6}):
        params = Sam2Params(**{**base.__dict__, **extra})
        stock = SAM2AutomaticMaskGenerator(model, output_mode="coco_rle",
                                           **amg_settings(params)).generate(rgb)
        fast = FastSam2Amg(model, params).generate(rgb)
        assert len(fast) == len(stock) and (len(stock) > 10 if not extra else True)
        for a, b in zip(stock, fast, strict=True):
            assert a["segmentation"] == b["segmentation"]
            assert a["predicted_iou"] == b["predicted_iou"]
            assert a["stability_score"] == b["stability_score"]
    write_images(tmp_path / "in", 2)
    summary = masks.run(masks_params(tmp_path / "in", tmp_path / "out", generator="sam2",
                                     sam2=Sam2Params(**{**base.__dict__, "box_nms_thresh": 0.7})))
    assert summary.written == 2 and verify_dir(tmp_path / "out") == []
