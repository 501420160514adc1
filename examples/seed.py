"""The seed experiment: a small language model over a grid of data settings, run for real.

    python examples/seed.py --workdir /tmp/xpm-demo

* ``Data`` makes a synthetic corpus (documents of at most ``dlen_max`` tokens, ``n_tokens`` in all);
* ``Model`` is an n-gram language model (``layers`` = the context length);
* ``Learn`` fits it on a training split and writes its metrics to ``<jobpath>/runs/metrics.json``.

A token of 1 lets one ``Learn`` job run at a time (as a GPU would). Every job's results folder is linked
from ``<workdir>/experiments/seed/results/runs/<tags>``, and a summary table is printed at the end.
Run it twice: the second run reuses every job and starts nothing.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import click

from experimaestro import Config, Meta, Param, Task, experiment, tag, tagspath
from experimaestro.click import arguments, forwardoption
from experimaestro.connectors.local import LocalConnector


class Data(Config):
    """A synthetic corpus drawn from a fixed Zipf-like distribution."""

    n_tokens: Param[int] = 1000
    "Number of tokens in the corpus"

    dlen_max: Param[int] = 50
    "Maximum length of a document"

    seed: Param[int] = 0
    "Random seed of the corpus"

    vocabulary: Param[int] = 40
    "Vocabulary size"

    def documents(self) -> list[list[int]]:
        rng = random.Random(self.seed)
        weights = [1.0 / (rank + 1) for rank in range(self.vocabulary)]
        docs: list[list[int]] = []
        total = 0
        while total < self.n_tokens:
            length = min(rng.randint(1, self.dlen_max), self.n_tokens - total)
            # A Markov flavour: the next token often follows the previous one.
            doc = [rng.choices(range(self.vocabulary), weights)[0]]
            for _ in range(length - 1):
                if rng.random() < 0.5:
                    doc.append((doc[-1] + 1) % self.vocabulary)
                else:
                    doc.append(rng.choices(range(self.vocabulary), weights)[0])
            docs.append(doc)
            total += length
        return docs


class Model(Config):
    """An n-gram language model with add-k smoothing."""

    layers: Param[int] = 2
    "Context length (number of previous tokens the model looks at)"

    smoothing: Param[float] = 0.1
    "Add-k smoothing constant"


class Learn(Task):
    """Fits the model on 80% of the documents and reports its perplexity on the rest."""

    model: Param[Model]
    "The model to learn"

    data: Param[Data]
    "The training corpus"

    epochs: Param[int] = 1
    "Passes over the training data"

    log_every: Meta[int] = 100
    "How often to log progress (not part of the identifier)"

    def execute(self) -> None:
        docs = self.data.documents()
        split = max(1, int(0.8 * len(docs)))
        train, test = docs[:split], docs[split:] or docs[:1]
        order = self.model.layers
        counts: Counter[tuple[int, ...]] = Counter()
        context_counts: Counter[tuple[int, ...]] = Counter()
        for _ in range(self.epochs):
            for doc in train:
                padded = [-1] * order + doc
                for i in range(order, len(padded)):
                    context = tuple(padded[i - order : i])
                    counts[context + (padded[i],)] += 1
                    context_counts[context] += 1
        k, vocabulary = self.model.smoothing, self.data.vocabulary
        log_likelihood, n = 0.0, 0
        for doc in test:
            padded = [-1] * order + doc
            for i in range(order, len(padded)):
                context = tuple(padded[i - order : i])
                p = (counts[context + (padded[i],)] + k) / (context_counts[context] + k * vocabulary)
                log_likelihood += math.log(p)
                n += 1
        metrics = {"perplexity": math.exp(-log_likelihood / max(n, 1)), "test_tokens": n}
        runs = Path("runs")  # the working directory is the job folder
        runs.mkdir(exist_ok=True)
        (runs / "metrics.json").write_text(json.dumps(metrics))
        print(f"perplexity {metrics['perplexity']:.3f} on {n} tokens")


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="workspace",
              show_default=True, help="The workspace folder")
@forwardoption(arguments(Learn).epochs)
@forwardoption(arguments(Model).layers)
def main(workdir: str, epochs: int, layers: int) -> None:
    """Run the seed experiment: Learn over dlen_max x n_tokens."""
    token = LocalConnector.instance().createtoken("seed-learner", 1)
    learners = []
    with experiment(workdir, "seed") as xp:
        runs = xp.resultspath / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for dlen_max in [10, 50]:
            for n_tokens in [2_000, 20_000]:
                data = Data.C(dlen_max=tag(dlen_max), n_tokens=tag(n_tokens))
                learn = Learn.C(data=data, model=Model.C(layers=layers))
                learn.epochs = epochs  # assignment works until submit()
                learn.add_dependencies(token.dependency(1))
                learn.submit()
                link = runs / tagspath(learn)
                if not link.is_symlink():
                    link.symlink_to(learn.jobpath / "runs")
                learners.append(learn)
        xp.wait()
    # Leaving the block raised FailedExperiment if a job failed: here, every job is done.

    click.echo(f"\n{'dlen_max':>8} {'n_tokens':>8} {'perplexity':>10}  job")
    for learn in learners:
        metrics = json.loads((learn.jobpath / "runs" / "metrics.json").read_text())
        tags = learn.tags()
        click.echo(
            f"{tags['dlen_max']:>8} {tags['n_tokens']:>8} {metrics['perplexity']:>10.3f}  "
            f"{learn.jobpath.relative_to(xp.workspace.path)}"
        )


if __name__ == "__main__":
    main()
