"""Command line: one command per pipeline stage, each a thin wrapper over the stage's ``run``.

    python cli.py synth | masks | pretrain | train | evaluate | score | segment | shards verify

Every command reads ``params.yaml`` (``--params`` for another file), applies ``--set
KEY=VALUE`` overrides, then its own flags. Heavy imports (torch, open_clip) happen inside
commands so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import sys

import click

from cli_options import params_option, set_option
from config import ConfigError, stage_params

# Errors a user can fix: shown as one line, never as a traceback.
USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError)



class Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=Group)
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
def cli(verbose: bool) -> None:
    """PixelCLIP pipeline: synthetic world, masks, training, evaluation."""
    # Libraries (open_clip logs model loading at INFO on the root logger) stay at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for package in ("config", "pipeline", "shards", "train", "evaluate"):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


@cli.command()
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
    from pipeline.synth import run

    cfg = stage_params(params_path, "synth", sets, {"out": out, "train": n_train, "val": n_val,
                                                     "web": n_web, "size": size, "seed": seed})
    summary = run(cfg, overwrite)
    click.echo(f"synth: {summary.train} train + {summary.val} val images, {summary.web} "
               f"captioned web photos in {summary.out}")


@cli.command()
@params_option
@set_option
@click.option("--generator", type=click.Choice(["sa1b", "sam", "dino", "superpixel"]),
              help="mask generator [masks.generator]")
@click.option("--input", "input_dir", help="image folder [masks.input]")
@click.option("--out", help="shard folder [masks.out]")
@click.option("--shard-size", type=int, help="samples per shard [masks.shard_size]")
@click.option("--max-side", type=int, help="resize so the long side is at most this")
@click.option("--workers", type=int, help="dask LocalCluster workers [masks.workers]")
@click.option("--scheduler", help="address of an existing dask scheduler")
@click.option("--device", help="auto | cpu | cuda [masks.device]")
def masks(params_path, sets, generator, input_dir, out, shard_size, max_side, workers,
          scheduler, device) -> None:
    """Generate (or ingest) masks and write them as WebDataset shards."""
    from pipeline.masks import run

    cfg = stage_params(params_path, "masks", sets, {
        "generator": generator, "input": input_dir, "out": out, "shard_size": shard_size,
        "max_side": max_side, "workers": workers, "scheduler": scheduler, "device": device})
    click.echo(f"masks: {run(cfg).line()}")


@cli.group(cls=Group)
def shards() -> None:
    """Inspect shard folders."""


@shards.command("verify")
@click.argument("directory")
def shards_verify(directory: str) -> None:
    """Check every shard: tar readable, samples complete, RLEs the image's size."""
    from shards.verify import verify_dir

    problems = verify_dir(directory)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{directory}: ok")


def _register_stage_commands() -> None:
    from evaluate.commands import COMMANDS as evaluate_commands
    from train.commands import COMMANDS as train_commands

    for command in [*train_commands, *evaluate_commands]:
        cli.add_command(command)


_register_stage_commands()

if __name__ == "__main__":
    sys.exit(cli())
