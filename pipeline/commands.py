"""Click commands of this package, registered by ``cli.py``."""

from __future__ import annotations

import click

from cli_options import params_option, set_option
from config import stage_params


@click.command()
@params_option
@set_option
@click.option("--generator", type=click.Choice(["sa1b", "sam", "sam2", "dino", "superpixel"]),
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


COMMANDS: list[click.Command] = [masks]
