"""``SWEEP_REPORT.md`` and the comparison figure of a sweep (see :mod:`ssvae.sweep`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # reports are written headless, also on cluster login nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ssvae.io import atomic_write  # noqa: E402
from ssvae.report.markdown import escape, format_value  # noqa: E402

if TYPE_CHECKING:
    from ssvae.sweep import Column, Job, SeedGroup, Sweep

#: Metrics drawn side by side in the comparison figure (CSV keys of ``ssvae.sweep`` columns).
FIGURE_METRICS = ("accuracy_unlabeled", "nmi", "cluster_accuracy", "K_eff")

COLUMN_NOTES = (
    "Wall time (s): seconds spent in training epochs (`training.training_time_sec`), "
    "evaluation and figures excluded. Acc. unlabelled: accuracy on the samples whose label "
    "was hidden. Cluster acc.: accuracy of the best one-to-one map from clusters (mixture "
    "components; k-means on the latent means under the standard prior) to labels. K eff: "
    "exp(entropy of component usage). Final loss: training loss of the last epoch. n/a: "
    "not reported by that job (e.g. K eff under the standard prior)."
)
BASELINE_NOTE = (
    "A baseline's acc. unl. is its accuracy on the same hidden labels, fitted on the same "
    "labelled samples (see each job's report)."
)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(row) for row in rows)]


def _job_link(job: Job, sweep: Sweep) -> str:
    report = job.directory / "REPORT.md"
    if not report.exists():
        return escape(job.name)
    target = report.relative_to(sweep.directory).as_posix()
    return f"[{escape(job.name)}](<{target}>)"


def job_table(sweep: Sweep) -> list[str]:
    """One row per job: link, varying overrides, status and headline metrics."""
    header = ["Job", *map(escape, sweep.keys), "Status", *(c.label for c in sweep.columns)]
    rows = [
        [
            _job_link(job, sweep),
            *(format_value(job.overrides.get(key)) for key in sweep.keys),
            escape(job.status),
            *(format_value(job.value(column)) for column in sweep.columns),
        ]
        for job in sweep.jobs
    ]
    return _table(header, rows)


def failure_table(sweep: Sweep) -> list[str]:
    """The jobs that did not complete, with their error."""
    header = ["Job", *map(escape, sweep.keys), "Status", "Error"]
    rows = [
        [
            _job_link(job, sweep),
            *(format_value(job.overrides.get(key)) for key in sweep.keys),
            escape(job.status),
            format_value(job.error or "no error recorded"),
        ]
        for job in sweep.unfinished
    ]
    return _table(header, rows)


def mean_std(group: SeedGroup, column: Column) -> str:
    """``0.8123 ± 0.0150``; the mean alone for one seed; ``n/a`` when no seed reports it."""
    mean, spread, _ = group.statistics(column)
    if mean is None:
        return "n/a"
    return format_value(mean) + ("" if spread is None else f" ± {format_value(spread)}")


def group_table(sweep: Sweep) -> list[str]:
    """Seed groups: mean ± sample standard deviation of each metric over completed seeds."""
    keys = [key for key in sweep.keys if key != "seed"]
    header = [*map(escape, keys), "Seeds", *(c.label for c in sweep.columns)]
    rows = []
    for group in sweep.groups:
        seeds = str(len(group.completed))
        if len(group.completed) < len(group.jobs):
            seeds += f" (of {len(group.jobs)})"
        rows.append(
            [
                *(format_value(group.overrides.get(key)) for key in keys),
                seeds,
                *(mean_std(group, column) for column in sweep.columns),
            ]
        )
    return _table(header, rows)


def _header(sweep: Sweep) -> list[str]:
    from ssvae.sweep import describe  # the sweep module imports this one lazily

    lines = ["# Sweep report", "", f"- **Sweep directory:** {escape(sweep.directory)}"]
    if sweep.command_overrides:
        command = " ".join(sweep.command_overrides).replace("`", "'")
        lines.append(f"- **Command:** `python train.py -m {command}`")
    lines.append(f"- **Jobs:** {escape(describe(sweep))}")
    if sweep.common:
        shared = ", ".join(f"{key}={value}" for key, value in sweep.common.items())
        lines.append(f"- **Shared by every job:** {escape(shared)}")
    if sweep.wall_time_sec is not None:
        lines.append(f"- **Sweep wall time:** {sweep.wall_time_sec:.1f} s")
    written = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return [*lines, f"- **Written:** {written}", ""]


def render_sweep_report(sweep: Sweep, figure_name: str | None) -> str:
    """The whole SWEEP_REPORT.md of a sweep."""
    notes = COLUMN_NOTES
    if any(column.path[0] == "baselines" for column in sweep.columns):
        notes += " " + BASELINE_NOTE
    lines = [*_header(sweep), "## Jobs", "", *job_table(sweep), "", notes, ""]
    if sweep.unfinished:
        lines += ["## Jobs that did not complete", "", *failure_table(sweep), ""]
    if sweep.groups:
        lines += [
            "## Seed groups",
            "",
            "Jobs that differ only in `seed`: mean ± sample standard deviation (n - 1) over "
            "the completed seeds; Seeds counts them.",
            "",
            *group_table(sweep),
            "",
        ]
    if figure_name:
        lines += ["## Comparison", "", f"![Sweep comparison]({figure_name})", ""]
    return "\n".join(lines)


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return float("nan")


def _rows(sweep: Sweep) -> list[tuple[str, list[Job]]]:
    """(label, jobs) per bar: one per seed group when there are groups, else one per job."""
    if sweep.groups:
        return [(group.label(), group.jobs) for group in sweep.groups]
    return [(job.label(sweep.keys), [job]) for job in sweep.jobs]


def _completed_values(jobs: list[Job], column: Column) -> np.ndarray:
    values = np.array([_number(job.value(column)) for job in jobs if job.completed])
    return values[np.isfinite(values)]


def _draw_metric(
    ax: Axes, rows: list[tuple[str, list[Job]]], column: Column, baselines: list[Column]
) -> None:
    """One panel: a bar per row (mean over its completed jobs), ± std and a dot per seed."""
    positions = np.arange(len(rows))
    per_row = [_completed_values(jobs, column) for _, jobs in rows]
    means = [values.mean() if values.size else np.nan for values in per_row]
    spreads = [values.std(ddof=1) if values.size > 1 else 0.0 for values in per_row]
    errors = spreads if any(spreads) else None
    ax.barh(positions, means, xerr=errors, color="tab:blue", alpha=0.7, capsize=3)
    for position, values in zip(positions, per_row):
        if values.size > 1:
            ax.scatter(values, np.full(values.size, position), color="black", s=10, zorder=3)

    for index, baseline in enumerate(baselines):
        per_row = [_completed_values(jobs, baseline) for _, jobs in rows]
        means = [values.mean() if values.size else np.nan for values in per_row]
        marker = "xd+^v"[index % 5]
        ax.scatter(
            means, positions, marker=marker, color=f"C{index + 1}", zorder=4, label=baseline.label
        )
    if baselines:
        # Below the panel, where it cannot hide a marker.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    ax.set_xlim(left=0)
    ax.set_title(column.label)


def comparison_figure(sweep: Sweep) -> Figure | None:
    """Headline metrics per job (or per seed group, with ± std bars and one dot per seed).

    Returns None when no job completed, or no completed job reports any drawn metric.
    """
    if not any(job.completed for job in sweep.jobs):
        return None
    columns = {column.key: column for column in sweep.columns}
    metrics = [
        columns[key]
        for key in FIGURE_METRICS
        if any(job.completed and job.value(columns[key]) is not None for job in sweep.jobs)
    ]
    if not metrics:
        return None
    rows = _rows(sweep)
    labels = [
        label if any(job.completed for job in jobs) else f"{label} (not completed)"
        for label, jobs in rows
    ]
    baselines = [c for c in sweep.columns if c.path[0] == "baselines"]
    height = 1.2 + 0.4 * len(rows)
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(3.2 * len(metrics) + 2, height), sharey=True, squeeze=False
    )
    for ax, column in zip(axes[0], metrics):
        _draw_metric(ax, rows, column, baselines if column.key == "accuracy_unlabeled" else [])
    axes[0][0].set_yticks(np.arange(len(rows)), labels, fontsize=8)
    axes[0][0].invert_yaxis()  # first job on top, as in the report's table
    figure.tight_layout()
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    """Save and close a figure; atomically, so a killed sweep never leaves half a PNG."""
    atomic_write(
        path,
        lambda handle: figure.savefig(handle, format="png", dpi=110, bbox_inches="tight"),
        mode="wb",
    )
    plt.close(figure)
    return path
