"""The ``experimaestro`` command."""

from __future__ import annotations

import click

from .version import __version__


@click.group()
@click.version_option(__version__, prog_name="experimaestro")
def main() -> None:
    """experimaestro: run and manage experiments made of many jobs."""
