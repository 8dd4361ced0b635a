"""PNG plots of the demos (matplotlib's object API: no pyplot, no global backend change)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Sequence

import numpy as np

from ._train import TrainLog
from .digits import SAMPLE_TEMPERATURE, DigitsResult
from .toy2d import BOX, MoonsResult

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["mosaic", "plot_digits", "plot_moons"]

DPI = 120
NORMAL_COLOUR, ANOMALY_COLOUR = "tab:blue", "tab:red"


def _figure(width: float, height: float) -> Figure:
    """A new ``Figure`` (raises a helpful ``ImportError`` without matplotlib)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "the demo plots need matplotlib: pip install 'invertible[demo]'"
        ) from error
    return Figure(figsize=(width, height), dpi=DPI, constrained_layout=True)


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path)
    return path


def mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    """Tile ``(N, H, W)`` images in rows of ``columns``, separated by one NaN pixel."""
    n, h, w = images.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1), np.nan)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        out[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = image
    return out


def _show_digits(axes: Axes, images: np.ndarray, title: str) -> None:
    from matplotlib import colormaps

    cmap = colormaps["gray_r"].with_extremes(bad="#c8d4e3")
    axes.imshow(mosaic(images, 8), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_title(title)
    axes.set_axis_off()


def _histograms(
    axes: Axes,
    normal: np.ndarray,
    anomalous: np.ndarray,
    labels: Sequence[str],
    unit: str,
    log_x: bool = False,
) -> None:
    """Density histograms of the two score sets on shared bins.

    With ``log_x`` (positive scores with a long tail) the bins are logarithmic; otherwise linear
    over twice the range of the normal scores, larger scores counted in the last bin.
    """
    both = np.concatenate([normal, anomalous])
    if log_x and both.min() > 0:
        bins = np.geomspace(both.min(), both.max(), 60)
        axes.set_xscale("log")
        # Plain numbers (4, not 4x10^0), and matplotlib's own choice of which minor ticks to label.
        from matplotlib.ticker import LogFormatter

        axes.xaxis.set_major_formatter(LogFormatter())
        axes.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))
    else:
        low = both.min()
        bins = np.linspace(low, low + 2 * (np.percentile(normal, 99.5) - low), 60)
    for scores, label, colour in zip((normal, anomalous), labels, (NORMAL_COLOUR, ANOMALY_COLOUR)):
        axes.hist(np.clip(scores, None, bins[-1]), bins=bins.tolist(), density=True, alpha=0.55,
                  color=colour, label=f"{label} (n={len(scores)})")
    axes.set_xlabel(f"anomaly score = NLL ({unit})")
    axes.set_ylabel("density")
    axes.legend()


def _loss_curve(axes: Axes, log: TrainLog, unit: str, eval_label: str) -> None:
    """Training loss per step (raw and smoothed) and the evaluation value per epoch."""
    losses = np.asarray(log.losses)
    epochs = np.arange(1, len(losses) + 1) / log.steps_per_epoch
    axes.plot(epochs, losses, color="0.75", linewidth=0.8, label="training batches")
    window = max(1, len(losses) // 50)
    if len(losses) >= window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes.plot(epochs[window - 1 :], smooth, color="tab:blue", label="training (smoothed)")
    if log.eval_epochs:
        axes.plot(log.eval_epochs, log.eval_values, "o-", color="tab:orange", markersize=3,
                  label=eval_label)
    low, high = np.percentile(losses, [0, 98]) if len(losses) > 10 else (losses.min(), losses.max())
    axes.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.1 * (high - low + 1e-9))
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"NLL ({unit})")
    axes.grid(alpha=0.3)
    axes.legend()


def plot_digits(result: DigitsResult, out: Path) -> List[Path]:
    """``samples.png``, ``scores.png`` and ``loss.png`` of a digits run, into ``out``."""
    d = result.normal_class
    figure = _figure(10.0, 3.3)
    left, right = figure.subplots(1, 2)
    _show_digits(left, result.real, f"real: held-out test images of digit {d}")
    _show_digits(right, result.samples, f"sampled from the flow (temperature {SAMPLE_TEMPERATURE})")
    figure.suptitle(f"Digits: real vs sampled (trained on {result.n_train} images of digit {d})")
    paths = [_save(figure, out / "samples.png")]

    figure = _figure(7.0, 4.2)
    axes = figure.subplots()
    _histograms(axes, result.normal_scores, result.anomaly_scores,
                (f"normal: digit {d}", "anomalous: other digits"), "bits/dim", log_x=True)
    axes.set_title(f"Test scores, image-level AUROC {result.auroc:.4f}")
    paths.append(_save(figure, out / "scores.png"))

    figure = _figure(7.0, 4.2)
    axes = figure.subplots()
    _loss_curve(axes, result.log, "bits/dim", f"held-out digit {d}")
    axes.set_title(f"Maximum-likelihood training on digit {d}")
    paths.append(_save(figure, out / "loss.png"))
    return paths


def plot_moons(result: MoonsResult, out: Path) -> List[Path]:
    """``density.png``, ``samples.png``, ``scores.png`` and ``loss.png`` of a moons run."""
    extent = (BOX[0], BOX[1], BOX[2], BOX[3])
    figure = _figure(7.0, 4.4)
    axes = figure.subplots()
    image = axes.imshow(result.density, origin="lower", extent=extent, cmap="magma", aspect="equal")
    figure.colorbar(image, ax=axes, shrink=0.8, label="p(x)")
    axes.set_title(f"Learned density (test NLL {result.test_nll:.3f} nats)")
    axes.set_xlabel("$x_1$")
    axes.set_ylabel("$x_2$")
    paths = [_save(figure, out / "density.png")]

    figure = _figure(9.0, 3.6)
    for axes, points, title in zip(
        figure.subplots(1, 2, sharex=True, sharey=True),
        (result.data, result.samples),
        ("data: two moons (test set)", "samples from the flow"),
    ):
        axes.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        axes.set_xlim(BOX[0], BOX[1])
        axes.set_ylim(BOX[2], BOX[3])
        axes.set_aspect("equal")
        axes.set_title(title)
        axes.set_xlabel("$x_1$")
        axes.set_ylabel("$x_2$")
    paths.append(_save(figure, out / "samples.png"))

    figure = _figure(7.0, 4.2)
    axes = figure.subplots()
    _histograms(axes, result.normal_scores, result.anomaly_scores,
                ("test moons", "uniform outliers"), "nats")
    axes.set_title(f"Test scores, AUROC {result.auroc:.4f} (last bin: all larger scores)")
    paths.append(_save(figure, out / "scores.png"))

    figure = _figure(7.0, 4.2)
    axes = figure.subplots()
    _loss_curve(axes, result.log, "nats", "test set")
    axes.set_title("Maximum-likelihood training on two moons")
    paths.append(_save(figure, out / "loss.png"))
    return paths
