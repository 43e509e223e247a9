"""Evaluate stage ``run()``, inference helpers and the CLI commands, with the random-init tiny
CLIP on a tiny synthetic set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from config import EvaluateParams
from evaluate.inference import InferenceOptions, predict, text_classifier, window_origins
from evaluate.labels import read_label_png, write_label
from models.clip import load_clip

MODEL = "TinyCLIP-ViT-8"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 'fine-tuned' tiny CLIP (another random init) saved like train/, with prompts.pt."""
    torch.manual_seed(1)
    bundle = load_clip(MODEL, "")
    folder = tmp_path_factory.mktemp("model")
    torch.save(bundle.model.state_dict(), folder / "final.pt")
    feats = torch.nn.functional.normalize(torch.randn(8, 128), dim=-1)
    torch.save({"token_embeddings": torch.randn(8, 4, 128), "text_features": feats,
                "template": "A photo of a {} in the scene"}, folder / "prompts.pt")
    return folder / "final.pt"


def eval_cfg(tmp_path: Path, synth_root: Path, **kw) -> EvaluateParams:
    base = dict(baseline="", checkpoint="", synthetic=str(synth_root), device="cpu", options=(),
                mask_cache=str(tmp_path / "mask_cache"),
                metrics=str(tmp_path / "metrics/eval.json"),
                per_class=str(tmp_path / "metrics/per_class.json"),
                per_class_plots=str(tmp_path / "metrics/per_class"),
                plots=str(tmp_path / "plots"), batch_size=3, num_plot_images=2)
    return EvaluateParams(**{**base, **kw})


def test_run_scores_baseline_and_checkpoint(tmp_path, synth_root, checkpoint):
    from evaluate.stage import run

    cfg = eval_cfg(tmp_path, synth_root, checkpoint=str(checkpoint),
                   predictions=str(tmp_path / "pred"))
    summary = run(cfg)
    metrics = json.loads(Path(cfg.metrics).read_text())
    res = metrics["synthetic"]
    assert set(res) == {"baseline", "checkpoint", "gain_miou", "gain_interval_95", "images",
                        "miou_convention", "skipped_images"}
    assert res["miou_convention"] == "detectron2" and res["skipped_images"] == 0
    assert res["images"] == 4
    # the stage's numbers are those of predicting each image alone and counting pixels by set
    from test_eval_metrics import reference_miou

    from evaluate.benchmarks import load_benchmark, load_pair, synthetic_layout
    from evaluate.inference import options_for

    bench = load_benchmark(synthetic_layout(synth_root), synth_root)
    bundle = load_clip(MODEL, str(checkpoint))  # (the baseline here is a random init)
    text = text_classifier(bundle, bench.classes)
    pairs = [load_pair(p, len(bench.classes)) for p in bench.pairs]
    preds = [predict(bundle, text, [img], options_for(cfg), torch.device("cpu"))[0]
             for img, _ in pairs]
    want = reference_miou(np.stack(preds), np.stack([t for _, t in pairs]), len(bench.classes),
                          convention="detectron2")
    assert res["checkpoint"]["miou"] == pytest.approx(100 * want, abs=1e-3)
    per_class = json.loads(Path(cfg.per_class).read_text())
    assert per_class["config"]["checkpoint"] == str(checkpoint)
    assert list(per_class["synthetic"]["baseline"])[0] == "sky"
    for name in ("overlays.png", "per_class_iou.png", "prompts.png"):
        assert (tmp_path / "plots/synthetic" / name).stat().st_size > 1000
    assert (tmp_path / "plots/summary.png").is_file()
    assert len(summary.skipped) == 5 and summary.lines()[0].startswith("synthetic: mIoU")

    # score on the written predictions gives the stage's numbers
    from evaluate.score import score_folders

    scored = score_folders(tmp_path / "pred/synthetic/checkpoint", synth_root / "val/labels",
                           len(per_class["synthetic"]["baseline"]),
                           against=tmp_path / "pred/synthetic/baseline")
    assert scored["miou"] == pytest.approx(res["checkpoint"]["miou"], abs=1e-6)
    assert scored["pixel_acc"] == pytest.approx(res["checkpoint"]["pixel_acc"], abs=1e-6)
    # and the gain's interval is the paired bootstrap over those images
    assert res["gain_interval_95"] == scored["against"]["interval_95"]
    low, high = res["gain_interval_95"]
    assert low < high and f"95% interval {low:+.2f} to {high:+.2f}" in summary.lines()[0]


def test_run_baseline_alone_and_missing_checkpoint(tmp_path, synth_root):
    from evaluate.stage import run

    run(eval_cfg(tmp_path, synth_root, sliding_window=True, max_images=2))
    res = json.loads((tmp_path / "metrics/eval.json").read_text())["synthetic"]
    assert set(res) == {"baseline", "images", "miou_convention", "skipped_images"}
    assert res["images"] == 2
    assert not (tmp_path / "plots/synthetic/prompts.png").exists()
    missing = tmp_path / "no/final.pt"
    with pytest.raises(FileNotFoundError, match=f"evaluate.checkpoint: .*{missing}"):
        run(eval_cfg(tmp_path, synth_root, checkpoint=str(missing)))
    with pytest.raises(ValueError, match="evaluate.resolution=60 is not a multiple"):
        run(eval_cfg(tmp_path, synth_root, resolution=60))


def test_real_benchmarks_alone_and_an_exif_rotated_image_is_skipped(tmp_path):
    """No synthetic world: a Cityscapes folder alone is scored (cityscapesscripts' mIoU), and
    an image whose EXIF orientation turns it away from its label is named and skipped, as
    detectron2 reads images oriented; the stage goes on."""
    from test_eval_benchmarks import make_fake

    from config import BenchmarkRoots
    from evaluate.stage import run

    base = make_fake(tmp_path / "data", "cityscapes", 19, stems=("a_1", "a_2", "a_3"))
    image = base / "leftImg8bit/val/frankfurt/a_2_leftImg8bit.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: 32x24 pixels are shown as 24x32
    Image.open(image).save(image, exif=exif)
    cfg = eval_cfg(tmp_path, Path(""), synthetic="",
                   roots=BenchmarkRoots(cityscapes=str(tmp_path / "data")))
    summary = run(cfg)
    res = json.loads(Path(cfg.metrics).read_text())
    assert list(res) == ["cityscapes"]
    assert res["cityscapes"]["images"] == 2 and res["cityscapes"]["skipped_images"] == 1
    assert res["cityscapes"]["miou_convention"] == "cityscapes"
    assert "1 skipped" in summary.lines()[0]
    with pytest.raises(ValueError, match="no benchmark to score"):
        run(eval_cfg(tmp_path, Path(""), synthetic=""))


def test_predict_whole_and_sliding_window_images():
    """Whole image: resized, dense features upsampled and normalised, cosine to the classes,
    upsampled to the image, argmax — restated here. A sliding window as large as the image is
    the whole-image prediction; windows over a larger image cover every pixel."""
    import torch.nn.functional as F

    from evaluate.inference import to_input
    from models.dense import dense_features

    torch.manual_seed(0)
    bundle = load_clip(MODEL, "")
    text = F.normalize(torch.randn(5, 128), dim=-1)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
              rng.integers(0, 256, (90, 40, 3), dtype=np.uint8)]
    whole = InferenceOptions(resolution=32, feature_size=16, dense_mode="maskclip")
    preds = predict(bundle, text, images, whole, torch.device("cpu"))
    for image, pred in zip(images, preds, strict=True):
        with torch.no_grad():
            feats = dense_features(bundle.model.visual,
                                   to_input(image, (32, 32), bundle, torch.device("cpu"))[None],
                                   "maskclip")
        feats = F.normalize(F.interpolate(feats, size=(16, 16), mode="bilinear"), dim=1)
        logits = F.interpolate(torch.einsum("bdhw,cd->bchw", feats, text),
                               size=image.shape[:2], mode="bilinear")
        assert pred.dtype == np.uint8 and np.array_equal(pred, logits[0].argmax(0).numpy())
    square = [images[0][:32, :32]]
    slide = InferenceOptions(resolution=32, feature_size=16, sliding_window=True,
                             dense_mode="maskclip")
    assert np.array_equal(predict(bundle, text, square, slide, torch.device("cpu"))[0],
                          predict(bundle, text, square, whole, torch.device("cpu"))[0])
    tall = predict(bundle, text, images[1:], slide, torch.device("cpu"))[0]
    assert tall.shape == (90, 40) and len(np.unique(tall)) > 1
    assert window_origins(100, 32, 21) == [0, 21, 42, 63, 68]
    assert window_origins(20, 32, 21) == [0]


def test_text_classifier_averages_the_templates():
    """Each class is the normalised mean of its normalised template embeddings."""
    import torch.nn.functional as F

    from evaluate.class_names import TEMPLATES
    from models.clip import encode_texts

    bundle = load_clip(MODEL, "")
    got = text_classifier(bundle, ["sky", "red car"])
    for i, name in enumerate(["sky", "red car"]):
        each = encode_texts(bundle.model, bundle.tokenizer, [t.format(name) for t in TEMPLATES])
        assert torch.allclose(got[i], F.normalize(each.mean(0), dim=0), atol=1e-6)
    one = text_classifier(bundle, ["sky"], templates=("a photo of a {}.",))
    assert not torch.allclose(one[0], got[0], atol=1e-3)


def test_cli_score_handmade(tmp_path):
    from cli import cli

    gt = np.array([[0, 0, 1, 1], [2, 2, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 2, 1, 0]], np.uint8)
    write_label(tmp_path / "gt/sub/x.png", gt)
    write_label(tmp_path / "pred/sub/x.png", pred)
    out = tmp_path / "score.json"
    result = CliRunner().invoke(cli, ["score", "--pred", str(tmp_path / "pred"), "--gt",
                                      str(tmp_path / "gt"), "--num-classes", "3",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    # IoU: class 0 1/2, class 1 3/4, class 2 1 → mIoU 75.00
    assert "mIoU 75.00" in result.output
    assert json.loads(out.read_text())["per_class"]["class_0"] == 50.0
    (tmp_path / "pred/sub/x.png").unlink()
    result = CliRunner().invoke(cli, ["score", "--pred", str(tmp_path / "pred"), "--gt",
                                      str(tmp_path / "gt"), "--num-classes", "3"])
    assert result.exit_code != 0 and "no prediction" in result.output
    assert "Traceback" not in result.output


def test_cli_score_against_another_model(tmp_path):
    """``--against``: both folders scored on the same images, the difference with its
    bootstrap interval printed and written; a missing folder names its flag."""
    from cli import cli

    rng = np.random.default_rng(0)
    for i in range(12):
        gt = rng.integers(0, 3, (6, 6)).astype(np.uint8)
        write_label(tmp_path / f"gt/{i}.png", gt)
        write_label(tmp_path / f"good/{i}.png", np.where(rng.random(gt.shape) < 0.9, gt, 0))
        write_label(tmp_path / f"poor/{i}.png", np.where(rng.random(gt.shape) < 0.4, gt, 0))
    out = tmp_path / "score.json"
    args = ["score", "--pred", str(tmp_path / "good"), "--gt", str(tmp_path / "gt"),
            "--num-classes", "3", "--against", str(tmp_path / "poor"), "--draws", "200"]
    result = CliRunner().invoke(cli, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    poor = CliRunner().invoke(cli, ["score", "--pred", str(tmp_path / "poor"), "--gt",
                                    str(tmp_path / "gt"), "--num-classes", "3"])
    assert f"mIoU {scored['against']['miou']:.2f}" in poor.output
    cmp = scored["against"]
    assert cmp["difference"] == pytest.approx(scored["miou"] - cmp["miou"], abs=1e-3)
    assert cmp["interval_95"][0] > 0 and (cmp["draws"], cmp["images"]) == (200, 12)
    assert f"difference {cmp['difference']:+.2f}" in result.output
    args[args.index("--against") + 1] = str(tmp_path / "gone")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0 and "--against: folder not found" in result.output


def test_cli_segment_writes_overlay_and_label(tmp_path, synth_root, checkpoint):
    from cli import cli

    image = sorted((synth_root / "val/images").glob("*.png"))[0]
    result = CliRunner().invoke(cli, ["segment", str(image), "--classes", "sky,grass, water",
                                      "--checkpoint", str(checkpoint), "--model", MODEL,
                                      "--out", str(tmp_path / "seg"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    label = read_label_png(tmp_path / "seg" / f"{image.stem}_label.png")
    assert label.shape == np.asarray(Image.open(image)).shape[:2] and label.max() < 3
    assert (tmp_path / "seg" / f"{image.stem}_overlay.png").stat().st_size > 1000
    result = CliRunner().invoke(cli, ["segment", str(image), "--classes", " , ",
                                      "--out", str(tmp_path / "seg")])
    assert result.exit_code != 0 and "at least one class name" in result.output
    for extra in (["--masks", "sa1b"], ["--masks", "superpixel", "--dense-mode", "sclip",
                                        "--pamr"]):
        out = tmp_path / extra[1]
        result = CliRunner().invoke(cli, ["segment", str(image), "--classes", "sky,grass,water",
                                          "--checkpoint", str(checkpoint), "--model", MODEL,
                                          "--out", str(out), "--device", "cpu", *extra])
        assert result.exit_code == 0, result.output
        guided = read_label_png(out / f"{image.stem}_label.png")
        assert guided.shape == label.shape
        if extra[1] == "sa1b":  # one class per stored region
            from synthetic.ceiling import region_masks

            for mask in region_masks(image, label.shape):
                assert len(np.unique(guided[mask])) == 1 or mask.sum() < 2


def test_cli_evaluate(tmp_path, synth_root):
    from cli import cli

    sets = [f"evaluate.{k}={v}" for k, v in (
        ("synthetic", synth_root), ("metrics", tmp_path / "m/eval.json"),
        ("per_class", tmp_path / "m/pc.json"), ("plots", tmp_path / "plots"),
        ("per_class_plots", tmp_path / "m/pc"), ("options", "[]"),
        ("num_plot_images", 1))]
    args = ["evaluate", "--checkpoint", "", "--baseline", "", "--device", "cpu",
            "--max-images", "2"]
    result = CliRunner().invoke(cli, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    assert "synthetic: mIoU baseline" in result.output
    assert json.loads((tmp_path / "m/eval.json").read_text())["synthetic"]["images"] == 2
    # --out puts the whole evaluation in one folder, and does not replace one unasked
    out = tmp_path / "side"
    side = args + ["--out", str(out), "--set", f"evaluate.synthetic={synth_root}",
                   "--set", "evaluate.options=[]", "--set", "evaluate.num_plot_images=1"]
    assert CliRunner().invoke(cli, side).exit_code == 0
    assert json.loads((out / "eval.json").read_text())["synthetic"]["images"] == 2
    assert (out / "per_class.json").is_file() and (out / "plots" / "summary.png").is_file()
    assert list((out / "per_class").glob("synthetic-baseline.csv"))
    again = CliRunner().invoke(cli, side)
    assert again.exit_code != 0 and "--out" in again.output and "--overwrite" in again.output
    assert CliRunner().invoke(cli, [*side, "--overwrite"]).exit_code == 0
    (tmp_path / "file").write_text("")
    clash = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "file")])
    assert clash.exit_code != 0 and "is a file, not a folder" in clash.output


def test_ceiling_pixel_score_is_the_evaluate_score_and_regions_are_scored(tmp_path, synth_root,
                                                                          checkpoint):
    from evaluate.stage import run
    from synthetic.ceiling import region_ceiling

    cfg = eval_cfg(tmp_path, synth_root, baseline=str(checkpoint))
    run(cfg)
    expected = json.loads(Path(cfg.metrics).read_text())["synthetic"]["baseline"]["miou"]
    result = region_ceiling(cfg, str(checkpoint))
    assert result.pixel_miou == pytest.approx(expected) and result.images == 4
    # regions named right, restated: each stored region's mean feature (at label size)
    # against the class texts, compared with the region's majority class
    import torch.nn.functional as F

    from evaluate.benchmarks import load_benchmark, load_pair, synthetic_layout
    from evaluate.inference import options_for, to_input, whole_features
    from synthetic.ceiling import region_masks

    bench = load_benchmark(synthetic_layout(synth_root), synth_root)
    bundle = load_clip(MODEL, str(checkpoint))
    text = text_classifier(bundle, bench.classes)
    options, hits = options_for(cfg), []
    for pair in bench.pairs:
        image, truth = load_pair(pair, len(bench.classes))
        with torch.no_grad():
            feats = whole_features(bundle, to_input(image, (options.resolution,) * 2, bundle,
                                                    torch.device("cpu"))[None],
                                   options.dense_mode)
        feats = F.interpolate(feats.float(), size=truth.shape, mode="bilinear")[0]
        for mask in region_masks(pair.image, truth.shape):
            named = int((text @ F.normalize(feats[:, torch.from_numpy(mask)].mean(1), dim=0))
                        .argmax())
            majority = int(np.bincount(truth[mask]).argmax())
            if majority < len(bench.classes):
                hits.append(named == majority)
    assert result.mask_accuracy == pytest.approx(100 * np.mean(hits))
    assert result.region_miou != result.pixel_miou
    names = (synth_root / "classes.txt").read_text().split("\n")
    assert result.per_class_accuracy and set(result.per_class_accuracy) <= set(names)

    from cli import cli

    out = tmp_path / "ceiling.json"
    res = CliRunner().invoke(cli, ["ceiling", "--set", f"evaluate.synthetic={synth_root}",
                                   "--checkpoint", str(checkpoint), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "region-labelled mIoU" in res.output
    assert json.loads(out.read_text())["mask_accuracy"] == pytest.approx(result.mask_accuracy)
    assert 0 <= result.interior_agreement <= 100 and 0 <= result.edge_agreement <= 100


def test_agreement_splits_a_region_at_its_edge():
    from synthetic.ceiling import agreement

    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True  # 36 pixels: 16 more than one pixel from the border, 20 on it
    pixel = np.full((10, 10), 3)
    pixel[4, 4] = 0  # one interior pixel disagrees
    pixel[2, 2:4] = 1  # two edge pixels disagree
    assert agreement(pixel, mask, 3, margin=1).tolist() == [[15, 16], [18, 20]]


def test_grid_limited_keeps_cell_aligned_regions_and_loses_thin_ones():
    from synthetic.ceiling import grid_limited

    labels = np.zeros((16, 16), np.uint8)
    labels[:, 8:] = 1  # boundary on a cell edge of a 4x4 grid: painted exactly
    assert (grid_limited(labels, 3, (4, 4), (8, 8)) == labels).all()
    labels[6:7, :] = 2  # a one-pixel stripe, a quarter of a cell: no cell is mostly stripe
    painted = grid_limited(labels, 3, (4, 4), (8, 8))
    assert not (painted == 2).any()
    assert (painted[:, :8] == 0).all() and (painted[:, 8:] == 1).all()


def test_options_table_scores_every_mode_mask_source_pamr_and_protocol(tmp_path, synth_root,
                                                                       checkpoint):
    """Each option row is scored for both models and written beside the default numbers;
    the row that repeats the default settings gives the default numbers."""
    from config import ConfigError, EvalOption
    from evaluate.stage import run

    options = (EvalOption("same"), EvalOption("clear", dense_mode="clearclip"),
               EvalOption("sclip", dense_mode="sclip", protocol="sclip"),
               EvalOption("naclip-pamr", dense_mode="naclip", pamr=True),
               EvalOption("regions", masks="sa1b"), EvalOption("superpixels", masks="superpixel"))
    cfg = eval_cfg(tmp_path, synth_root, checkpoint=str(checkpoint), options=options,
                   mask_cache=str(tmp_path / "cache"), resolution=32, feature_size=16,
                   predictions=str(tmp_path / "pred"))
    run(cfg)
    res = json.loads(Path(cfg.metrics).read_text())["synthetic"]
    table = res["options"]
    from evaluate.score import score_folders

    for name in ("sclip", "regions"):  # each row's label PNGs score as its numbers
        for model in ("baseline", "checkpoint"):
            scored = score_folders(tmp_path / f"pred/synthetic/options/{name}/{model}",
                                   synth_root / "val/labels", 18)
            assert scored["miou"] == pytest.approx(table[name][model]["miou"], abs=1e-6)
    for bad in ((EvalOption("a"), EvalOption("a")), (EvalOption("a/b"),)):
        with pytest.raises(ConfigError, match="^evaluate.options: "):
            run(dataclasses.replace(cfg, options=bad))
    assert list(table) == [o.name for o in options]
    for name, row in table.items():
        assert {"dense_mode", "protocol", "masks", "pamr", "baseline", "checkpoint",
                "gain_miou", "gain_interval_95", "images", "seconds_per_image"} <= set(row), name
        assert row["gain_miou"] == pytest.approx(
            row["checkpoint"]["miou"] - row["baseline"]["miou"], abs=1e-3)
    assert table["same"]["checkpoint"] == res["checkpoint"]
    assert table["sclip"]["protocol"] == "sclip" and table["regions"]["masks"] == "sa1b"
    assert len({row["checkpoint"]["miou"] for row in table.values()}) >= 5
    shard, = (tmp_path / "cache").glob("synthetic-sa1b-*/shards/val-000000.tar")
    made = shard.stat().st_mtime_ns
    # a second run (of that row alone) reads the cached masks and gives the same numbers
    run(dataclasses.replace(cfg, options=(options[4],)))
    assert json.loads(Path(cfg.metrics).read_text())["synthetic"]["options"]["regions"][
        "checkpoint"] == table["regions"]["checkpoint"]
    assert shard.stat().st_mtime_ns == made


def test_an_option_scores_its_own_checkpoint(tmp_path, synth_root, checkpoint):
    """An option may name the checkpoint it scores (one trained in its mode): that row's numbers
    are the checkpoint's default-row numbers, eval.json names it and its training modes, the
    other rows keep the stage's checkpoint, and a missing one is an error naming its key."""
    from config import EvalOption
    from evaluate.stage import run

    torch.manual_seed(2)
    own = tmp_path / "clear" / "final.pt"
    own.parent.mkdir()
    torch.save(load_clip(MODEL, "").model.state_dict(), own)
    (own.parent / "params.json").write_text(json.dumps({"dense_mode": "clearclip",
                                                        "teacher_dense_mode": "maskclip"}))
    torch.save(load_clip(MODEL, "").model.state_dict(), tmp_path / "base.pt")
    cfg = eval_cfg(tmp_path, synth_root, checkpoint=str(checkpoint), resolution=32,
                   baseline=str(tmp_path / "base.pt"),
                   feature_size=16, options=(EvalOption("own", checkpoint=str(own)),
                                             EvalOption("same")))
    run(cfg)
    table = json.loads(Path(cfg.metrics).read_text())["synthetic"]["options"]
    assert (table["own"]["checkpoint_path"], table["same"]["checkpoint_path"]) == (
        str(own), str(checkpoint))
    assert table["own"]["checkpoint"] != table["same"]["checkpoint"]
    assert (table["own"]["trained_dense_mode"], table["same"]["trained_dense_mode"]) == (
        "clearclip", None)
    assert (table["own"]["trained_teacher_dense_mode"],
            table["same"]["trained_teacher_dense_mode"]) == ("maskclip", None)
    alone = dataclasses.replace(cfg, checkpoint=str(own), options=())
    run(alone)
    default = json.loads(Path(alone.metrics).read_text())["synthetic"]
    assert table["own"]["checkpoint"] == default["checkpoint"]
    assert table["own"]["baseline"] == default["baseline"]
    missing = dataclasses.replace(cfg, options=(EvalOption("gone", checkpoint="nope.pt"),))
    with pytest.raises(FileNotFoundError, match="^evaluate.options.gone.checkpoint: "):
        run(missing)


@pytest.mark.parametrize("generator", ["sam", "dino", pytest.param("sam2", marks=pytest.mark.slow)])
def test_masks_from_a_model_generator_guide_evaluate_and_segment(tmp_path, synth_root,
                                                                  checkpoint, generator):
    """``evaluate.masks`` naming SAM, SAM 2.1 or DINO (random weights): the stage runs that
    generator over the validation images into cached shards, and every pixel of a mask that no
    smaller mask overlaps takes that mask's one class, in evaluate and in segment alike (the
    plain prediction does not)."""
    from cli import cli
    from config import MasksParams
    from evaluate.stage import run
    from shards.reader import list_shards, sample_pipeline
    from shards.rle import decode
    from tests.masks_testdata import TINY_DINO, TINY_SAM, TINY_SAM2

    settings = MasksParams(device="cpu", sam=TINY_SAM, sam2=TINY_SAM2, dino=TINY_DINO)
    guided = eval_cfg(tmp_path, synth_root, checkpoint=str(checkpoint), masks=generator,
                      resolution=32, feature_size=16, predictions=str(tmp_path / "guided"))
    run(guided, settings)
    run(dataclasses.replace(guided, masks="", predictions=str(tmp_path / "plain"),
                            metrics=str(tmp_path / "plain.json")), settings)
    folder, = (tmp_path / "mask_cache").glob(f"synthetic-{generator}-*")
    samples = list(sample_pipeline(list_shards(folder / "shards"), split=False, masks=False))
    assert len(samples) == 4 and {s["record"]["generator"]["name"] for s in samples} == {
        generator}

    def sole_regions(rles: list[dict], size: tuple[int, int]) -> list[np.ndarray]:
        masks = decode(rles, *size)
        area = masks.reshape(len(masks), -1).sum(1)
        return [m & ~masks[(area <= a) & (np.arange(len(masks)) != i)].any(0)
                for i, (m, a) in enumerate(zip(masks, area, strict=True))]

    def classes_in(region: np.ndarray, label: np.ndarray) -> int:
        return len(np.unique(label[region]))

    mixed = 0
    for sample in samples:
        key = sample["record"]["source"]
        image = np.asarray(Image.open(synth_root / "val/images" / key))
        regions = [r for r in sole_regions(sample["rles"], image.shape[:2]) if r.sum() > 1]
        assert regions
        painted = read_label_png(tmp_path / "guided/synthetic/checkpoint" / key)
        assert all(classes_in(r, painted) == 1 for r in regions)
        plain = read_label_png(tmp_path / "plain/synthetic/checkpoint" / key)
        mixed += sum(classes_in(r, plain) > 1 for r in regions)
        if key == samples[0]["record"]["source"]:
            sets = [f"masks.{generator}.{k}={v}" for k, v in
                    getattr(settings, generator).__dict__.items()]
            result = CliRunner().invoke(cli, [
                "segment", str(synth_root / "val/images" / key), "--classes",
                ",".join(f"class {i}" for i in range(18)), "--checkpoint", str(checkpoint),
                "--model", MODEL, "--out", str(tmp_path / "seg"), "--device", "cpu",
                "--masks", generator, "--resolution", "32",
                *[x for s in sets for x in ("--set", s)]])
            assert result.exit_code == 0, result.output
            segmented = read_label_png(tmp_path / "seg" / f"{Path(key).stem}_label.png")
            assert all(classes_in(r, segmented) == 1 for r in regions)
    assert mixed > 0
