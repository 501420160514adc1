"""The experiment of xp.yaml (the file: variant): tasks, schema and helper in one file."""
import json
import os
from typing import List

import heavylib

from experimaestro import Param, Task, tag
from experimaestro.experiments import ConfigurationBase, ExperimentHelper, configuration
from experimaestro.launcherfinder import find_launcher


class Train(Task):
    rate: Param[float]
    epochs: Param[int]
    seed: Param[int]
    suffix: Param[str] = ""

    @heavylib.compile
    def execute(self):
        if self.epochs < 0:
            raise ValueError(f"epochs={self.epochs}: give a positive number")
        (self.jobpath / "result.json").write_text(json.dumps({
            "rate": self.rate, "epochs": self.epochs, "seed": self.seed, "suffix": self.suffix,
            "heavylib_real": heavylib.REAL is True,
            "ws_env": os.environ.get("RUNXP_WS_ENV"), "cli_env": os.environ.get("RUNXP_CLI_ENV"),
        }))


@configuration()
class Learning:
    rate: float
    epochs: int = 1


@configuration
class Configuration(ConfigurationBase):
    learning: Learning
    seeds: List[int]
    note: str = ""


class SuffixHelper(ExperimentHelper):
    """Reads `--suffix X` from the arguments after the YAML file."""

    suffix = ""

    def run(self, args, configuration):
        if args[:1] == ["--suffix"]:
            self.suffix = args[1]
            args = args[2:]
        super().run(args, configuration)


@SuffixHelper.decorator()
def run(helper: SuffixHelper, cfg: Configuration):
    launcher = find_launcher("duration=1h & cpu(cores=1)")
    print(f"launcher: {launcher.describe()}")
    print(f"heavylib in the controller: {type(heavylib.REAL).__name__}")
    print(f"pre_experiment: {os.environ.get('RUNXP_PRE_EXPERIMENT')}")
    print(f"note: {cfg.note}; workdir: {helper.xp.workspace.path}")
    for seed in cfg.seeds:
        task = Train.C(rate=cfg.learning.rate, epochs=cfg.learning.epochs, seed=tag(seed),
                       suffix=helper.suffix)
        task.submit(launcher=launcher)
        print(f"job: {seed} {task.__xpm__.job.path}")
