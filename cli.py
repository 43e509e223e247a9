"""Command line: one command per pipeline stage, each a thin wrapper over the stage's ``run``.

    python cli.py synth | pretrain | masks | train | evaluate | score | segment | ceiling |
                  shards verify | export-weights

Each package registers its own commands (``<package>/commands.py``, a ``COMMANDS`` list).
Every command reads ``params.yaml`` (``--params`` for another file), applies ``--set
KEY=VALUE`` overrides, then its own flags. Heavy imports (torch, open_clip) happen inside
commands so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import sys

import click

from config import ConfigError

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
    for package in ("config", "models", "pipeline", "shards", "train", "evaluate", "synthetic"):
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


def _register_commands() -> None:
    """Every package's ``COMMANDS``, in the order of the pipeline."""
    from evaluate.commands import COMMANDS as evaluate_commands
    from pipeline.commands import COMMANDS as pipeline_commands
    from shards.commands import COMMANDS as shards_commands
    from synthetic.commands import COMMANDS as synthetic_commands
    from train.commands import COMMANDS as train_commands

    for commands in (synthetic_commands, pipeline_commands, shards_commands, train_commands,
                     evaluate_commands):
        for command in commands:
            cli.add_command(command)


_register_commands()

if __name__ == "__main__":
    sys.exit(cli())
