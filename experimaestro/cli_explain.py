"""``experimaestro explain-id PARAMS_JSON``: why a job has its identifier.

Reads a job's ``params.json``, rebuilds its configuration graph (the experiment's modules must be
importable) and prints, for the job and each sub-configuration, which parameters its identifier
encodes (with their bytes) and which are left out, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import click

from .core.explain import explain
from .core.serialization import ParamsFormatError, loads


@click.command("explain-id")
@click.argument("params_json", type=click.Path(path_type=Path, dir_okay=False))
def explain_id(params_json: Path) -> None:
    """Explain the identifier of the job described by PARAMS_JSON (a job's params.json)."""
    try:
        text = params_json.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise click.ClickException(f"{params_json}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{params_json}: cannot read it ({exc})") from None
    try:
        config = loads(text, job=params_json.resolve().parent, source=str(params_json))
    except ParamsFormatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(explain(config)))
