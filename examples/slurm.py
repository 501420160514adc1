"""The same script on a laptop and on a Slurm cluster: each task says what it needs, and
``find_launcher`` picks the launcher from ``launchers.py`` (see examples/launchers.py).

    python examples/slurm.py --workdir /tmp/xpm-slurm-example

With no ``launchers.py`` (a laptop), every job runs locally, and a warning says so once. On a
cluster whose ``~/.config/experimaestro/launchers.py`` maps GPU requirements to Slurm, the training
jobs go to Slurm. The job identifiers are the same in both cases: the launcher is not a parameter.
``experimaestro launchers find "duration=1h & cuda(mem=8G)"`` shows what would be chosen, and why.
"""

import argparse
import json

from experimaestro import Param, Task, experiment, find_launcher, tag, tagspath


class Train(Task):
    """A (tiny) training job: writes its result into its folder."""

    learning_rate: Param[float]
    epochs: Param[int] = 3

    def execute(self) -> None:
        loss = 1.0
        for _ in range(self.epochs):
            loss *= 1 - self.learning_rate
        (self.jobpath / "result.json").write_text(json.dumps({"loss": loss}))


class Evaluate(Task):
    """Reads the results of the training jobs."""

    runs: Param[list[Train]]

    def execute(self) -> None:
        losses = [json.loads((run.jobpath / "result.json").read_text())["loss"] for run in self.runs]
        (self.jobpath / "best.json").write_text(json.dumps({"best": min(losses)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/xpm-slurm-example")
    args = parser.parse_args()

    # A GPU for 1 hour if there is one, else 2 cores: the first launcher that fits.
    gpu = find_launcher("duration=1h & cuda(mem=8G) | duration=1h & cpu(cores=2, mem=2G)")
    cpu = find_launcher("duration=10m & cpu(cores=1, mem=1G)")

    with experiment(args.workdir, "slurm-example") as xp:
        runs = [
            Train.C(learning_rate=tag(rate)).submit(launcher=gpu) for rate in (0.1, 0.3)
        ]
        best = Evaluate.C(runs=runs).submit(launcher=cpu)
        xp.wait()
    for run in runs:
        print(tagspath(run), run.jobpath.name)  # the folder's name is the job identifier
    print(f"best: {json.loads((best.jobpath / 'best.json').read_text())['best']:.3f}")


if __name__ == "__main__":
    main()
