"""Click commands of this package, registered by ``cli.py``: evaluate, score, segment."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli_options import params_option, set_option
from config import DENSE_MODES, MASK_SOURCES, PROTOCOLS, all_params, parse_sets


def inference_options(command):
    """The flags of how images become labels, shared by evaluate and segment."""
    for option in reversed([
        click.option("--dense-mode", type=click.Choice(DENSE_MODES),
                     help="last block's dense path [evaluate.dense_mode]"),
        click.option("--protocol", type=click.Choice(PROTOCOLS), help="[evaluate.protocol]"),
        click.option("--masks", type=click.Choice(["", *MASK_SOURCES]),
                     help="mask-guided inference: the masks' generator [evaluate.masks]"),
        click.option("--pamr/--no-pamr", default=None, help="PAMR refinement [evaluate.pamr]"),
    ]):
        command = option(command)
    return command


@click.command()
@params_option
@set_option
@click.option("--checkpoint", help="fine-tuned CLIP, '' = baseline only [evaluate.checkpoint]")
@click.option("--baseline", help="untuned CLIP: tag or path [evaluate.baseline]")
@click.option("--model", "clip_model", help="open_clip model name [evaluate.clip_model]")
@click.option("--resolution", type=int, help="input side in pixels [evaluate.resolution]")
@click.option("--sliding-window/--whole-image", "sliding_window", default=None,
              help="sliding windows instead of the whole image [evaluate.sliding_window]")
@click.option("--max-images", type=int, help="per benchmark, 0 = all [evaluate.max_images]")
@click.option("--device", help="auto | cpu | cuda [evaluate.device]")
@click.option("--out", help="folder for this evaluation's eval.json, per_class.json, per_class/ "
              "and plots/ (evaluate.metrics, .per_class, .per_class_plots, .plots unless set)")
@click.option("--overwrite", is_flag=True, help="replace the evaluation already in --out")
@inference_options
def evaluate(params_path, sets, checkpoint, baseline, clip_model, resolution, sliding_window,
             max_images, device, out, overwrite, dense_mode, protocol, masks, pamr) -> None:
    """Score the untuned CLIP and the checkpoint on every benchmark (mIoU, plots)."""
    from evaluate.stage import run

    flags = {"checkpoint": checkpoint, "baseline": baseline, "clip_model": clip_model,
             "resolution": resolution, "sliding_window": sliding_window,
             "max_images": max_images, "device": device, "dense_mode": dense_mode,
             "protocol": protocol, "masks": masks, "pamr": pamr}
    if out:
        if Path(out).exists() and not Path(out).is_dir():
            raise click.ClickException(f"--out: {out} is a file, not a folder")
        if (Path(out) / "eval.json").exists() and not overwrite:
            raise click.ClickException(f"--out: {out} holds an evaluation (eval.json); "
                                       "pass --overwrite to replace it")
        given = parse_sets(sets)
        flags.update({k: f"{out}/{name}" for k, name in (
            ("metrics", "eval.json"), ("per_class", "per_class.json"),
            ("per_class_plots", "per_class"), ("plots", "plots")) if f"evaluate.{k}" not in given})
    params = all_params(params_path, "evaluate", sets, flags)
    cfg = params.evaluate
    summary = run(cfg, params.masks)
    for line in summary.lines():  # skipped benchmarks are logged by run()
        click.echo(line)
    click.echo(f"metrics: {summary.metrics}, plots: {cfg.plots}")


@click.command()
@click.option("--pred", "pred_dir", required=True, help="folder of predicted label PNGs")
@click.option("--gt", "gt_dir", required=True, help="folder of ground-truth label PNGs")
@click.option("--num-classes", type=click.IntRange(1, 65535), required=True,
              help="number of classes")
@click.option("--ignore-index", type=int, default=255, show_default=True)
@click.option("--suffix", default=".png", show_default=True,
              help="ground-truth file suffix, e.g. _gtFine_labelTrainIds.png")
@click.option("--convention", type=click.Choice(["detectron2", "cityscapes"]),
              default="detectron2", show_default=True,
              help="mIoU over classes in the ground truth (detectron2) or in ground truth or "
                   "prediction (cityscapesscripts)")
@click.option("--against", help="another model's label PNGs: the mIoU difference with a 95% "
              "interval (paired bootstrap over the images)")
@click.option("--draws", type=click.IntRange(100), default=1000, show_default=True,
              help="bootstrap draws for --against")
@click.option("--seed", type=int, default=0, show_default=True, help="bootstrap seed")
@click.option("--json", "json_out", help="write the scores (with per-class IoU) here")
def score(pred_dir, gt_dir, num_classes, ignore_index, suffix, convention, against, draws, seed,
          json_out) -> None:
    """Score predicted label PNGs against ground truth (same numbers as evaluate)."""
    from evaluate.score import score_folders

    result = score_folders(pred_dir, gt_dir, num_classes, ignore_index, suffix,
                           convention=convention, against=against, draws=draws, seed=seed)
    click.echo(f"mIoU {result['miou']:.2f}  pixel acc {result['pixel_acc']:.2f}  "
               f"({result['images']} images)")
    if against:
        cmp = result["against"]
        low, high = cmp["interval_95"]
        click.echo(f"against {against}: mIoU {cmp['miou']:.2f}, difference "
                   f"{cmp['difference']:+.2f} (95% interval {low:+.2f} to {high:+.2f}, higher "
                   f"in {100 * cmp['p_higher']:.1f}% of {draws} paired bootstrap draws)")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--classes", required=True, help="comma-separated class names, e.g. 'sky,dog'")
@click.option("--checkpoint", help="open_clip checkpoint: path or tag [evaluate.checkpoint]")
@click.option("--model", "clip_model", help="open_clip model name [evaluate.clip_model]")
@click.option("--out", required=True, help="output folder")
@click.option("--resolution", type=int, help="input side in pixels [evaluate.resolution]")
@click.option("--sliding-window/--whole-image", "sliding_window", default=None)
@click.option("--device", help="auto | cpu | cuda [evaluate.device]")
@params_option
@set_option
@inference_options
def segment(images, classes, checkpoint, clip_model, out, resolution, sliding_window, device,
            params_path, sets, dense_mode, protocol, masks, pamr) -> None:
    """Segment IMAGES with the given class names: overlay PNG with legend + label PNG."""
    from evaluate.segment import parse_classes
    from evaluate.segment import segment as run_segment

    names = parse_classes(classes)
    params = all_params(params_path, "evaluate", sets, {
        "checkpoint": checkpoint, "clip_model": clip_model, "resolution": resolution,
        "sliding_window": sliding_window, "device": device, "dense_mode": dense_mode,
        "protocol": protocol, "masks": masks, "pamr": pamr})
    for path in run_segment(list(images), names, out, params.evaluate, params.masks):
        click.echo(str(path))


COMMANDS: list[click.Command] = [evaluate, score, segment]
