"""Click commands of the embedded default, registered by ``cli.py``: synth, pretrain, ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli_options import params_option, set_option
from config import stage_params


@click.command()
@params_option
@set_option
@click.option("--out", help="output folder [synth.out]")
@click.option("--train", "n_train", type=int, help="train images [synth.train]")
@click.option("--val", "n_val", type=int, help="val images [synth.val]")
@click.option("--web", "n_web", type=int, help="captioned web photos [synth.web]")
@click.option("--size", type=int, help="image side in pixels [synth.size]")
@click.option("--seed", type=int, help="world seed [synth.seed]")
@click.option("--overwrite", is_flag=True, help="empty the output folder first")
def synth(params_path, sets, out, n_train, n_val, n_web, size, seed, overwrite) -> None:
    """Render the procedural synthetic world (images, masks, labels, captioned web photos)."""
    from synthetic.synth import run

    cfg = stage_params(params_path, "synth", sets, {"out": out, "train": n_train, "val": n_val,
                                                     "web": n_web, "size": size, "seed": seed})
    summary = run(cfg, overwrite)
    click.echo(f"synth: {summary.train} train + {summary.val} val images, {summary.web} "
               f"captioned web photos in {summary.out}")


@click.command()
@params_option
@set_option
@click.option("--captions", help="folder with captions.jsonl and images/ [pretrain.captions]")
@click.option("--out", help="output folder [pretrain.out]")
@click.option("--steps", type=int, help="optimiser steps [pretrain.steps]")
def pretrain(params_path, sets, captions, out, steps) -> None:
    """Train the tiny CLIP of the embedded default on the synthetic captions."""
    from synthetic.pretrain import run

    cfg = stage_params(params_path, "pretrain", sets,
                       {"captions": captions, "out": out, "steps": steps})
    click.echo(f"pretrain: {run(cfg).line()}")


@click.command()
@params_option
@set_option
@click.option("--checkpoint", help="CLIP to diagnose: path or tag [evaluate.baseline]")
@click.option("--json", "json_out", help="write the numbers (with per-class accuracy) here")
def ceiling(params_path, sets, checkpoint, json_out) -> None:
    """Diagnose a CLIP on synthetic val: pixel mIoU vs each true region named by its pooled
    feature (what perfect within-mask consistency could reach)."""
    from dataclasses import asdict

    from synthetic.ceiling import region_ceiling

    cfg = stage_params(params_path, "evaluate", sets, {})
    result = region_ceiling(cfg, checkpoint or cfg.baseline)
    click.echo(result.line())
    click.echo("regions named right: " + ", ".join(
        f"{name} {acc:.0f} %" for name, acc in result.per_class_accuracy.items()))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(asdict(result), indent=2) + "\n")


COMMANDS: list[click.Command] = [synth, pretrain, ceiling]
