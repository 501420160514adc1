"""An experiment to watch in the web monitor: training runs over a grid, each reporting its progress,
evaluations that wait for them, and one run that fails.

    python examples/monitor_demo.py --workdir /tmp/xpm-monitor-demo [--port 12345] [--seconds 60]

Open the printed address while it runs (docs/monitor.md). A token of 2 lets two runs train at once.
docs/monitor.png was taken from it with
``chromium --headless --no-sandbox --window-size=1300,640 --screenshot=docs/monitor.png URL``.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import click

from experimaestro import Param, Task, experiment, progress, tag


class Train(Task):
    """Fits a model for ``epochs`` epochs of ``seconds`` seconds in all; fails when the learning
    rate is too high (on purpose)."""

    model: Param[str]
    lr: Param[float]
    epochs: Param[int] = 10
    seconds: Param[float] = 60.0

    def execute(self) -> None:
        rng = random.Random(f"{self.model}{self.lr}")
        loss = 5.0
        for epoch in range(self.epochs):
            time.sleep(self.seconds / self.epochs)
            loss *= math.exp(-self.lr * 10) * (0.9 + 0.2 * rng.random())
            print(f"epoch {epoch + 1}: loss {loss:.4f}", flush=True)
            progress((epoch + 1) / self.epochs, f"epoch {epoch + 1}/{self.epochs}")
            if self.lr > 0.3 and epoch == 2:
                raise FloatingPointError(f"the loss diverged at epoch {epoch + 1} (lr={self.lr})")
        (Path("loss.txt")).write_text(f"{loss}\n")


class Evaluate(Task):
    """Evaluates a trained model."""

    trained: Param[Train]

    def execute(self) -> None:
        loss = float((self.trained.jobpath / "loss.txt").read_text())
        print(f"evaluation: perplexity {math.exp(min(loss, 50)):.2f}")


@click.command()
@click.option("--workdir", default="/tmp/xpm-monitor-demo", type=click.Path(path_type=Path))
@click.option("--port", default=12345, show_default=True, help="The monitor's port (0: a free one).")
@click.option("--seconds", default=60.0, show_default=True, help="How long a training run lasts.")
def main(workdir: Path, port: int, seconds: float) -> None:
    """Run the demo experiment with its monitor."""
    with experiment(workdir, "monitor-demo", port=port) as xp:
        gpu = xp.token("gpu", 2)
        for model in ("bert", "t5", "gpt"):
            for lr in (0.01, 0.1, 0.5):
                train = Train.C(model=tag(model), lr=tag(lr), seconds=seconds)
                train.add_dependencies(gpu.dependency(1))
                train.submit()
                if lr < 0.5:
                    Evaluate.C(trained=train).submit()


if __name__ == "__main__":
    main()
