"""The six figures of a run report; plot helpers take an optional ``ax``, return the figure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written headless, also inside containers and on clusters

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

LOSS_TERMS = ("loss", "recon_loss", "kl_z", "kl_c", "classification_loss")


def _axes(ax: Axes | None, size: tuple[float, float] = (6, 4.5)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=size)
    return figure, ax


def project_2d(points: np.ndarray) -> tuple[np.ndarray, str]:
    """The points themselves when d <= 2, else their first two principal components."""
    if points.shape[1] == 1:
        return np.hstack([points, np.zeros_like(points)]), "z"
    if points.shape[1] == 2:
        return points, "z"
    return PCA(n_components=2).fit_transform(points), "PCA of z"


def loss_curves(history: Sequence[dict]) -> Figure:
    """Training and validation curves of each logged loss term over epochs."""
    terms = [t for t in LOSS_TERMS if any(f"train/{t}" in row for row in history)]
    figure, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3.2), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, term in zip(axes[0], terms):
        for stage in ("train", "val"):
            values = [row.get(f"{stage}/{term}", np.nan) for row in history]
            ax.plot(epochs, values, label=stage)
        ax.set_title(term)
        ax.set_xlabel("epoch")
    axes[0][0].legend()
    figure.tight_layout()
    return figure


def latent_scatter(
    mu: np.ndarray,
    colours: np.ndarray,
    title: str,
    legend_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Latent means coloured by an integer label (class or component)."""
    figure, ax = _axes(ax)
    points, axis_name = project_2d(mu)
    scatter = ax.scatter(points[:, 0], points[:, 1], c=colours, cmap="tab20", s=4, alpha=0.7)
    values = np.unique(colours)
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=scatter.cmap(scatter.norm(value)))
        for value in values
    ]
    names = [legend_names[v] if legend_names else str(v) for v in values]
    ax.legend(handles, names, fontsize=7, markerscale=0.8, loc="best", ncol=2)
    ax.set_title(title)
    ax.set_xlabel(f"{axis_name} 1")
    ax.set_ylabel(f"{axis_name} 2")
    return figure


def confidence_histogram(confidence: np.ndarray, ax: Axes | None = None) -> Figure:
    """Histogram of max_c q(c|x) (or max class probability for the standard prior)."""
    figure, ax = _axes(ax)
    ax.hist(confidence, bins=40, range=(0, 1), color="tab:blue")
    ax.set_xlabel("max responsibility")
    ax.set_ylabel("samples")
    ax.set_title("Responsibility confidence")
    return figure


def reconstructions(originals: np.ndarray, recons: np.ndarray, image_side: int = 28) -> Figure:
    """Originals (top row) above their reconstructions (bottom row)."""
    count = len(originals)
    figure, axes = plt.subplots(2, count, figsize=(1.2 * count, 2.6), squeeze=False)
    for column in range(count):
        for row, images in enumerate((originals, recons)):
            axes[row][column].imshow(
                images[column].reshape(image_side, -1), cmap="gray", vmin=0, vmax=1
            )
            axes[row][column].axis("off")
    axes[0][0].set_title("input", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    figure.tight_layout()
    return figure


def mixture_evolution(history: Sequence[dict]) -> Figure:
    """Mixture weights pi and validation component usage over epochs, one line per component."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    epochs = [row["epoch"] for row in history]
    for ax, key, title in (
        (axes[0], "pi", "mixture weights pi"),
        (axes[1], "usage", "component usage (val)"),
    ):
        rows = [row.get(key) for row in history]
        if not any(rows):
            ax.text(0.5, 0.5, "no mixture components", ha="center", transform=ax.transAxes)
        else:
            values = np.array(
                [r if r is not None else [np.nan] * len(next(x for x in rows if x)) for r in rows]
            )
            for component in range(values.shape[1]):
                ax.plot(epochs, values[:, component], label=str(component))
        ax.set_title(title)
        ax.set_xlabel("epoch")
    if any(row.get("pi") for row in history):
        axes[1].legend(fontsize=6, ncol=2, title="component", title_fontsize=7)
    figure.tight_layout()
    return figure


def save(figure: Figure, path) -> None:
    figure.savefig(path, dpi=110)
    plt.close(figure)
