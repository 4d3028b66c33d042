"""`explore`: a local page of every evaluated view, both models and the user's own prompts."""

from __future__ import annotations

from typing import Any

import click

from floodcache.commands.common import DEVICE_HELP, PATH, option, user_errors
from floodcache.explore.config import ExploreConfig


@click.command()
@option("--cache", source=ExploreConfig, type=PATH, help="The cache the evaluation was made from.")
@option(
    "--eval",
    name="evaluation",
    source=ExploreConfig,
    type=PATH,
    help="The evaluation folder (from `evaluate` or `report`).",
)
@click.option(
    "--decoder",
    "decoders",
    multiple=True,
    type=PATH,
    help="A fine-tuned run of the evaluation to answer with; repeat for several "
    "[default: every run the evaluation holds].",
)
@option(
    "--host",
    source=ExploreConfig,
    help="Address to listen on; any other than this machine's lets the network read the images.",
)
@option("--port", source=ExploreConfig, type=click.IntRange(0, 65535), help="Port (0: a free one).")
@click.option("--device", help=DEVICE_HELP)
@user_errors
def explore(**options: Any) -> None:
    """Serve a page to explore an evaluation, and print its address.

    The table lists every evaluated view with each model x prompt IoU, sortable and
    filterable; a view shows its image with the ground truth, the pretrained and the
    fine-tuned masks and the evaluated prompt. Click adds a water point, shift-click (or
    right-click) a background point, drag draws a box: every decoder answers from the cached
    embedding, with its IoU. Nothing is written. Ctrl-C stops it.

    Example: python cli.py explore --cache cache/flood.h5 --eval reports/flood
    """
    from floodcache.explore.run import run_explore

    config = ExploreConfig(**options)
    if not config.local:
        click.echo(
            f"warning: listening on {config.host}: anyone on that network can open the page "
            "and read the images; leave --host out to keep it to this machine",
            err=True,
        )

    def announce(url: str) -> None:
        click.echo(f"explorer ready: open {url} in a browser (Ctrl-C stops it)")

    run_explore(config, announce)
    click.echo("explorer stopped")


COMMANDS = [explore]
