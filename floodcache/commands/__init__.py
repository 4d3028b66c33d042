"""The command line: a thin click layer over the stages, one module per command or close
group. A command's docstring is its --help; its body builds the stage's config from its
options (their defaults read from that config, `common.option`) and calls one function.

Only torch-free modules are imported here, so that --help answers at once; a command
imports the stage it runs when it runs."""

from __future__ import annotations

import logging

import click

from floodcache.commands import bench, data, embed, evaluate, explore, predict, run, train
from floodcache.utils import program


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """floodcache: adapt Segment Anything (SAM) to flood-water segmentation.

    \b
    download -> audit -> embed (SAM's image encoder, once, into an HDF5 cache)
      -> train (the mask decoder only, from the cache) -> evaluate -> report
    `run` does audit to report in one go; then `predict` segments new images and
    `export` writes the fine-tuned SAM checkpoint. `verify` checks a cache, `bench`
    times floodcache against the usual workflow.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    logging.captureWarnings(True)
    # click names the program from sys.argv[0]: `cli.py` from a checkout, `floodcache` installed
    program.started_as(click.get_current_context().info_name)


for module in (data, embed, train, evaluate, explore, run, predict, bench):
    for command in module.COMMANDS:
        main.add_command(command)
