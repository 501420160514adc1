"""The ``experimaestro`` command (click). Each group of commands lives in its own module."""

from __future__ import annotations

import click

from .explain import explain_id
from .jobs import experiments, jobs
from .launchers import launchers
from .monitor import monitor
from .remote import stage_receive, sync_receive, sync_send
from .run_experiment import run_experiment
from .tokens import tokens
from ..version import __version__


@click.group()
@click.version_option(__version__, prog_name="experimaestro")
def main() -> None:
    """experimaestro: run and manage experiments made of many jobs."""


main.add_command(explain_id)
main.add_command(jobs)
main.add_command(experiments)
main.add_command(tokens)
main.add_command(launchers)
main.add_command(run_experiment)
main.add_command(sync_send)
main.add_command(sync_receive)
main.add_command(stage_receive)
main.add_command(monitor)

#: The name of the group in experimaestro 2.x (``from experimaestro.cli import cli``).
cli = main
