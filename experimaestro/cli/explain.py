"""``experimaestro explain-id PARAMS_JSON``: why a job has its identifier.

Reads a job's ``params.json``, rebuilds its configuration graph (the experiment's modules must be
importable) and prints, for the job and each sub-configuration, which parameters its identifier
encodes (with their bytes) and which are left out, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..core.explain import explain
from ..core.identifier import config_digest, recompute_digest
from ..core.serialization import ParamsFormatError, from_document, parse_document


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
        document = parse_document(text, source=str(params_json))
        config = from_document(document, job=params_json.resolve().parent)
    except ParamsFormatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(explain(config)))
    stored = document.identifier or config_digest(config).hex()
    today = recompute_digest(config).hex()
    if today == stored:
        click.echo(f"\nchecked: today's class declarations give the same identifier ({stored[:12]})")
    else:
        click.echo(
            f"\nwarning: today's class declarations give {today}, not the folder's {stored}: "
            f"a parameter's declaration, type id or default changed since the job was created, "
            f"so submitting it again would create a new job"
        )
