"""A run whose loss ended NaN or infinite produced no result, whatever else it logged.

Early stopping watches only the monitored metric, and an accuracy stays finite when the loss is
NaN, so a diverged run would otherwise end `completed` with meaningless numbers, and a sweep would
rank it like any other job. Checked once, after fit, on every logged loss.
"""

import math
from collections.abc import Mapping


def fail_if_diverged(metrics: Mapping[str, float | str], epochs: int | None = None) -> None:
    """Raise `FloatingPointError` naming each `*loss` metric that is NaN or infinite."""
    bad = {
        key: value
        for key, value in metrics.items()
        if key.endswith("loss") and not math.isfinite(float(value))
    }
    if bad:
        where = f" after {epochs} epoch(s)" if epochs is not None else ""
        values = ", ".join(f"{key}={value}" for key, value in bad.items())
        raise FloatingPointError(
            f"The loss diverged: {values}{where}. Lower optimizer.lr, set "
            "trainer.gradient_clip_val, or check the data for NaN/inf values."
        )
