"""``experimaestro run-experiment YAML [ARGS]...``: run a 2.x-style experiment (see
:mod:`experimaestro.experiments.run` and docs/migrating.md)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import click

from ..core.config import RunMode
from ..experiments.helper import UnexpectedArguments
from ..experiments.run import RunOptions, run_experiment as run
from ..experiments.yamlfile import ConfigurationError


@click.command(
    "run-experiment",
    context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]},
)
@click.argument("yaml_file", metavar="YAML")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--workdir", help="The workspace folder (instead of one of settings.yaml).")
@click.option("--workspace", help="A workspace id of settings.yaml (in the configuration folder).")
@click.option(
    "--xpm-config-dir", type=click.Path(path_type=Path, file_okay=False),
    help="The configuration folder, where launchers.py and settings.yaml are read "
         "(default: ~/.config/experimaestro).",
)
@click.option(
    # The members' names, as 2.x's click.Choice(RunMode) takes them (RunMode accepts them).
    "--run-mode", type=click.Choice([m.name.lower() for m in RunMode], case_sensitive=False),
    default="normal", show_default=True,
    help="normal; generate_only: write the job folders, run nothing; dry_run: write nothing.",
)
@click.option("--env", type=(str, str), multiple=True, metavar="NAME VALUE",
              help="An environment variable for the jobs (repeatable).")
@click.option("-c", "--conf", multiple=True, metavar="KEY.PATH=VALUE",
              help="Set a configuration value, after the YAML files (repeatable; seeds.0=3 "
                   "sets a list item).")
@click.option("--pre-yaml", multiple=True, help="A YAML file merged before YAML (repeatable).")
@click.option("--post-yaml", multiple=True, help="A YAML file merged after YAML (repeatable).")
@click.option("--file", "xp_file", help="The Python file defining run (instead of file:/module:).")
@click.option("--module-name", help="The module defining run (instead of file:/module:).")
@click.option("--show", is_flag=True, help="Print the merged configuration (JSON) and exit.")
@click.option("--debug", is_flag=True, help="Log debug messages.")
@click.option("--port", type=int, help="Serve the web monitor on this port while the experiment runs.")
@click.option("--web", is_flag=True,
              help="Serve the web monitor (on settings.yaml's server.port, else 12345).")
@click.option("--console", is_flag=True, help="Accepted for 2.x compatibility (no console monitor).")
@click.option("--host", help="Address the web monitor listens on (default 127.0.0.1; any other needs "
              "the access token it prints).")
@click.option("--no-db", is_flag=True, hidden=True, help="Accepted for 2.x compatibility; not used.")
@click.option("--events-viewer", is_flag=True, hidden=True)
@click.option("--events-format", hidden=True)
@click.option("--no-progress", is_flag=True, hidden=True)
@click.option("--watcher", hidden=True)
@click.option("--polling-interval", type=float, hidden=True)
def run_experiment(
    yaml_file: str, args: tuple[str, ...], workdir: Optional[str], workspace: Optional[str],
    xpm_config_dir: Optional[Path], run_mode: str, env: tuple[tuple[str, str], ...],
    conf: tuple[str, ...], pre_yaml: tuple[str, ...], post_yaml: tuple[str, ...],
    xp_file: Optional[str], module_name: Optional[str], show: bool, debug: bool,
    port: Optional[int], web: bool, console: bool, host: Optional[str], **_ignored: object,
) -> None:
    """Run the experiment described by YAML (the .yaml suffix may be left out).

    ARGS after YAML (or after --) go to the experiment's helper. The YAML's reserved keys (id,
    file or module, pythonpath, pre_experiment, parent or imports, add_timestamp, dirty_git...)
    and the rest are checked against the type of run()'s configuration parameter.
    """
    # experimaestro's warnings (with --debug, every message) on stderr; the experiment's own log
    # goes to its experiment.log (its closing line and failure summary to stderr already).
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if debug:
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.DEBUG)
    else:
        handler.setLevel(logging.WARNING)
        handler.addFilter(lambda record: record.name != "experimaestro")
        logging.getLogger("experimaestro").addHandler(handler)
    options = RunOptions(
        yaml_file=yaml_file, args=list(args), workdir=workdir, workspace=workspace,
        xpm_config_dir=xpm_config_dir, run_mode=RunMode(run_mode.lower()), env=list(env),
        conf=list(conf), pre_yaml=list(pre_yaml), post_yaml=list(post_yaml), xp_file=xp_file,
        module_name=module_name, show=show, port=port, web=web, console=console, host=host,
    )
    try:
        code = run(options, warn=lambda m: click.echo(f"warning: {m}", err=True))
    except (ConfigurationError, UnexpectedArguments) as exc:
        raise click.ClickException(str(exc)) from None
    if code:
        raise SystemExit(code)
