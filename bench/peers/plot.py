"""The echo-latency distributions of a run as one PNG: a CDF per peer on a log time axis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt


def echo_cdf(latencies_ms: dict[str, list[float]], path: Path, title: str) -> None:
    """Write the cumulative distribution of each peer's keystroke echo latency to `path`."""
    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=120)
    for peer, values in latencies_ms.items():
        if not values:
            continue
        ordered = sorted(values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(ordered, fractions, where="post", label=f"{peer} (n={len(ordered)})")
    axes.set_xscale("log")
    axes.set_xlabel("keystroke to echo, ms (log scale)")
    axes.set_ylabel("fraction of keystrokes")
    for level in (0.5, 0.99):
        axes.axhline(level, color="grey", linewidth=0.6, linestyle=":")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(loc="lower right")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
