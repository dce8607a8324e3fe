"""Per-feature statistics (min/max/mean/std/count and quantiles), the format of LeRobot's stats.json."""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def feature_stats(values: np.ndarray, quantiles: bool = True) -> dict[str, list]:
    """Stats of ``values`` (N, D) per dimension as JSON-ready lists (``q01`` .. ``q99`` when asked)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"feature_stats needs a non-empty (N, D) array, got shape {values.shape}")
    stats = {
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "count": [len(values)],
    }
    if quantiles:
        for q in QUANTILES:
            stats[f"q{round(q * 100):02d}"] = np.quantile(values, q, axis=0).tolist()
    return stats
