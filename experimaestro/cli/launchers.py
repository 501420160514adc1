"""``experimaestro launchers find SPEC``: which launcher a requirement gets, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..launcherfinder import RequirementSyntaxError, explain_launcher


@click.group()
def launchers() -> None:
    """The launcher finder (launchers.py)."""


@launchers.command("find")
@click.argument("spec", nargs=-1, required=True)
@click.option("--tags", "tags", multiple=True, help="A tag passed to launchers.py (repeatable).")
@click.option(
    "--config-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Read launchers.py from this folder (default: $XDG_CONFIG_HOME/experimaestro, "
    "else ~/.config/experimaestro).",
)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), envvar="XPM_WORKDIR",
    show_envvar=True, help="The workspace: its launchers.py comes before the user's one.",
)
def find(spec: tuple[str, ...], tags: tuple[str, ...], config_dir: Optional[Path],
         workdir: Optional[Path]) -> None:
    """Print the launcher that find_launcher(SPEC) would return, the launchers.py that chose it and
    the alternative it matched. SPEC: e.g. "duration=4h & cuda(mem=16G)*2 | cpu(cores=4, mem=8G)"
    (several SPEC: tried in turn)."""
    try:
        choice = explain_launcher(*spec, tags=tags, config_dir=config_dir, workdir=workdir)
    except RequirementSyntaxError as error:
        raise click.BadParameter(str(error), param_hint="SPEC") from None
    for index, requirement in enumerate(choice.requirements):
        click.echo(f"requirement {index + 1}: {requirement}" if len(spec) > 1
                   else f"requirement: {requirement}")
        for number, alternative in enumerate(requirement.requirements, start=1):
            click.echo(f"  alternative {number}: {alternative.spec()}")
    click.echo("launchers.py looked for, in order:")
    for path in choice.searched:
        state = "used" if path == choice.source else ("exists" if path.is_file() else "absent")
        click.echo(f"  {path} ({state})")
    launcher = choice.launcher
    click.echo(f"launcher: {type(launcher).__name__}: {launcher.describe()}")
    if choice.fallback:
        click.echo(f"why: {choice.reason}: the local launcher is used")
        return
    why = choice.reason
    if len(choice.requirements) > 1:
        why += f" for requirement {choice.requirement_index + 1}"  # type: ignore[operator]
    if choice.matched is not None and choice.alternative_index is not None:
        why += (
            f", after requirements.match() matched alternative {choice.alternative_index + 1} "
            f"({choice.matched.requirement.spec()}) on {choice.host!r}"
        )
    else:
        why += " (without a successful requirements.match() call)"
    click.echo(f"why: {why}")
