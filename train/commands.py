"""Click commands of this package, registered by ``cli.py``."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import click

from cli_options import params_option, set_option
from config import TrainParams, all_params, parse_sets


@click.command()
@params_option
@set_option
@click.option("--shards", help="shard folder [train.shards]")
@click.option("--out", help="run folder [train.out]; its curves go to <out>/live unless "
              "train.live is set")
@click.option("--clip-pretrained", help="open_clip tag or checkpoint [train.clip_pretrained]")
@click.option("--steps", type=int, help="optimiser steps [train.steps]")
@click.option("--batch-size", type=int, help="global batch [train.batch_size]")
@click.option("--device", help="auto | cpu | cuda[:N] [train.device]")
@click.option("--resume", help="'latest' or a checkpoint path [train.resume]")
@click.option("--overwrite", is_flag=True, default=None,
              help="replace the run already in the run folder [train.overwrite]")
@click.option("--official", is_flag=True,
              help="the train_official run: train's recipe with train_official's out and blocks")
def train(params_path, sets, shards, out, clip_pretrained, steps, batch_size, device,
          resume, overwrite, official) -> None:
    """PixelCLIP fine-tuning (run under torchrun for DDP)."""
    from train.loop import run

    cfg = train_params(params_path, sets, official, {
        "shards": shards, "out": out, "clip_pretrained": clip_pretrained, "steps": steps,
        "batch_size": batch_size, "device": device, "resume": resume, "overwrite": overwrite})
    summary = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one summary, from rank 0
        click.echo(f"train: {summary.line()}")


def train_params(params_path: str, sets: tuple[str, ...], official: bool,
                 flags: dict[str, Any]) -> TrainParams:
    """``train`` as the command runs it: params.yaml ← ``--set`` ← flags; with ``official``,
    train_official's keys replace train's. A side run's curves travel with it
    (``<out>/live``) instead of overwriting the default run's, unless train.live is set."""
    params = all_params(params_path, "train", sets, flags)
    cfg = params.train
    side_run = bool(flags.get("out")) or official
    if official:
        side = params.train_official
        cfg = replace(cfg, out=flags.get("out") or side.out, dense_mode=side.dense_mode,
                      teacher_dense_mode=side.teacher_dense_mode)
    if side_run and "train.live" not in parse_sets(sets):
        cfg = replace(cfg, live=f"{cfg.out}/live")
    return cfg


@click.command("export-weights")
@click.option("--model", "clip_model", required=True, help="open_clip model name")
@click.option("--pretrained", required=True, help="open_clip pretrained tag, e.g. openai")
@click.option("--out", required=True, help="weights file to write (a .json beside says what)")
def export_weights(clip_model, pretrained, out) -> None:
    """Save an open_clip model's weights as a local file (on a machine with internet)."""
    from pathlib import Path

    from models.clip import load_clip, write_weights_info
    from train.optim import atomic_save

    if Path(out).exists():
        raise FileExistsError(f"--out: {out} exists; remove it or choose another path")
    bundle = load_clip(clip_model, pretrained, key="--pretrained")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(bundle.model.state_dict(), out)
    info = write_weights_info(out, clip_model, pretrained)
    click.echo(f"export-weights: {clip_model} ({pretrained}) → {out}, {info}")


COMMANDS: list[click.Command] = [train, export_weights]
