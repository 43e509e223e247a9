"""Click commands of this package, registered by ``cli.py``."""

from __future__ import annotations

import click


@click.group()
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


COMMANDS: list[click.Command] = [shards]
