"""What a training run leaves in OUTPUT besides its weights: the loss history (CSV), its plot
(PNG) and the run's stats."""

from __future__ import annotations

import csv

import numpy as np

LOSS_CSV, LOSS_PNG, STATS_JSON = "loss.csv", "loss.png", "stats.json"


def write_loss_csv(path: str, history: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def read_loss_csv(path: str) -> list[dict]:
    """The loss history, one row per step: epoch, step, loss, lr (the larger of lr and clip_lr, as
    scheduled), logit_scale."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: int(v) if k in ("epoch", "step") else float(v) for k, v in row.items()} for row in rows]


def epoch_means(history: list[dict]) -> list[float]:
    """Mean loss of each epoch, in epoch order."""
    epochs = sorted({row["epoch"] for row in history})
    return [float(np.mean([row["loss"] for row in history if row["epoch"] == e])) for e in epochs]


def plot_loss(history: list[dict], path: str) -> None:
    """A PNG at path: the loss of every step, and each epoch's mean at its last step."""
    from matplotlib.figure import Figure  # here, not at import: every `vidx` command imports this module

    epochs = sorted({row["epoch"] for row in history})
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.subplots()
    axes.plot([row["step"] for row in history], [row["loss"] for row in history], lw=0.8, alpha=0.5, label="step")
    ends = [max(row["step"] for row in history if row["epoch"] == e) for e in epochs]
    axes.plot(ends, epoch_means(history), "o-", label="epoch mean")
    axes.set(xlabel="step", ylabel="loss", title="training loss")
    axes.legend()
    figure.savefig(path, format="png")
