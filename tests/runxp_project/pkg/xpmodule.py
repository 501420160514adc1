"""The module: variant: a plain run(helper, cfg) function."""
from __future__ import annotations

from typing import List

from experimaestro.experiments import ConfigurationBase, ExperimentHelper, configuration

from .tasks import Square


@configuration
class Configuration(ConfigurationBase):
    seeds: List[int]
    learning: dict = {}


def run(helper: ExperimentHelper, cfg: Configuration):
    for seed in cfg.seeds:
        task = Square.C(x=seed)
        task.submit()
        print(f"square: {seed} {task.__xpm__.job.path}")
