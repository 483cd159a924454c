"""The picture of a sweep summary: the optimized metric against each swept hyperparameter."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from expkit.sweeps.summary_tables import SEED_KEY, Summary
from expkit.utils.atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd


def plot(summary: Summary, path: Path) -> Path | None:
    """The optimized metric against each swept hyperparameter (seed only when nothing else varies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import pandas as pd

    metric = summary.metric
    done = summary.jobs[summary.jobs["status"] == "completed"]
    if metric is None or done[metric].isna().all():
        return None
    params = [k for k in summary.swept if k != SEED_KEY] or summary.swept or ["job"]
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.4), squeeze=False)
    for ax, param in zip(axes[0], params, strict=True):
        x = done[param]
        numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
        if not numeric:
            labels = sorted({str(v) for v in x})
            x = x.map(lambda v, labels=labels: labels.index(str(v)))
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.scatter(x, done[metric], alpha=0.7, label="job")
        means = done.assign(_x=x).groupby("_x")[metric].agg(["mean", "std", "count"])
        if (means["count"] > 1).any():
            ax.errorbar(
                means.index,
                means["mean"],
                yerr=means["std"].fillna(0),
                color="C1",
                marker="_",
                capsize=3,
                label="mean ± std",
            )
            ax.legend(fontsize=8)
        if numeric and (param in summary.log_x or _geometric(x)):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary.sweep_dir.name}: {len(done)} completed job(s)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _geometric(x: pd.Series) -> bool:
    """Grid values spaced by factors (1e-4, 1e-3, 1e-2): a log axis shows them evenly."""
    values = sorted(set(x.dropna()))
    if len(values) < 2 or values[0] <= 0 or values[-1] / values[0] < 10:
        return False
    steps = [b / a for a, b in zip(values, values[1:], strict=False)]
    return math.prod(steps) ** (1 / len(steps)) >= 3
