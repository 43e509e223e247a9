"""Click options every stage command shares (``cli.py`` and the packages' ``commands.py``)."""

from __future__ import annotations

import click

from config import DEFAULT_PARAMS

params_option = click.option("--params", "params_path", default=str(DEFAULT_PARAMS),
                             show_default=True, help="params file")
set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                          help="override any params key, e.g. --set train.steps=10")
