"""Plot helpers shared by the examples: the demo's look (titles, axis labels, colourbars).

matplotlib's object API only (no pyplot, no global backend change), so the examples plot the
same way headless and inside a notebook. The scripts import this module only when asked to plot,
so they run without matplotlib otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from invertible.demo.plots import mosaic

__all__ = ["figure", "image_rows", "plane", "save"]

DPI = 120
REAL_COLOUR, SAMPLE_COLOUR = "tab:blue", "tab:orange"


def figure(width: float, height: float) -> Figure:
    """A new figure whose layout keeps titles, labels and colourbars from overlapping."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, folder: str, name: str) -> Path:
    """Write ``fig`` to ``folder/name`` (creating ``folder``) and print the path."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / name
    fig.savefig(path)
    print(f"plot: {path}")
    return path


def plane(ax: Axes, limit: float, title: str) -> None:
    """Title, labelled axes and an equal-aspect square window ``[-limit, limit]^2``."""
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(title)


def image_rows(rows: Sequence[Tuple[str, np.ndarray]], columns: int, title: str) -> Figure:
    """Grey images ``(N, H, W)`` in ``[0, 1]``, one labelled block per entry of ``rows``.

    Each block is its own panel with its label as a title, so real and sampled images are set
    apart by a gap and a name, and framed in different colours: blue for the first block (the
    real images), orange for the sampled ones. Light lines separate the tiles; one colourbar
    gives the grey scale.
    """
    lines = [-(-len(images) // columns) for _, images in rows]
    fig = figure(0.55 * columns + 1.4, 0.55 * sum(lines) + 0.4 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), 1, height_ratios=lines, squeeze=False)[:, 0]
    cmap = colormaps["gray_r"].with_extremes(bad="#c8d4e3")
    for k, (ax, (label, images)) in enumerate(zip(axes, rows)):
        shown = ax.imshow(mosaic(images, columns), cmap=cmap, vmin=0.0, vmax=1.0,
                          interpolation="nearest")
        ax.set_title(label, loc="left", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set(color=REAL_COLOUR if k == 0 else SAMPLE_COLOUR, linewidth=2.5)
    fig.colorbar(shown, ax=list(axes), shrink=0.8, label="grey level")
    fig.suptitle(title)
    return fig
