"""The comparison report of a Hydra sweep: one row per job, seed groups, a comparison figure.

A sweep directory (``outputs/multirun/<date>_<time>/``) holds one sub-directory per job,
each with its own ``summary.json`` and ``.hydra/overrides.yaml``. This module reads them
back, whatever state they are in, and writes beside them:

- ``SWEEP_REPORT.md``: the job table, the failures, the seed groups and the figure;
- ``sweep_summary.csv``: one row per job, full-precision values;
- ``sweep_summary.json``: the same rows plus the seed groups and the sweep's metadata;
- ``sweep_comparison.png``: headline metrics side by side.

It runs automatically when a multirun ends (:class:`SweepReportCallback`, configured in
``conf/hydra/callbacks/sweep_report.yaml``) and on demand, e.g. after a cluster sweep whose
launcher died before the end::

    python -m ssvae.sweep outputs/multirun/2024-05-01_12-00-00
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ssvae.io import write_json, write_text

log = logging.getLogger(__name__)

COMPLETED = "completed"
#: Status of a job directory without a readable summary.json (killed, still running, ...).
INCOMPLETE = "incomplete"
#: The override that seed groups average over.
SEED_KEY = "seed"


@dataclass(frozen=True)
class Column:
    """A metric of the sweep tables: its CSV name, its header and where summary.json keeps it."""

    key: str
    label: str
    path: tuple[str, ...]


HEADLINE_COLUMNS = (
    Column("epochs", "Epochs", ("training", "epochs_completed")),
    Column("wall_time_sec", "Wall time (s)", ("training", "training_time_sec")),
    Column("accuracy", "Accuracy", ("classification", "accuracy")),
    Column("accuracy_unlabeled", "Acc. unlabelled", ("classification", "accuracy_unlabeled")),
    Column("nmi", "NMI", ("clustering", "nmi")),
    Column("ari", "ARI", ("clustering", "ari")),
    Column("cluster_accuracy", "Cluster acc.", ("clustering", "cluster_accuracy")),
    Column("K_eff", "K eff", ("mixture", "K_eff")),
    Column("active_components", "Active comp.", ("mixture", "active_components")),
    Column("final_loss", "Final loss", ("training", "loss")),
)


def baseline_columns(jobs: Sequence[Job]) -> list[Column]:
    """``accuracy_unlabeled`` of every baseline that any job's summary reports."""
    names: list[str] = []
    for job in jobs:
        baselines = job.summary.get("baselines")
        for name in baselines if isinstance(baselines, dict) else ():
            if name not in names:
                names.append(name)
    return [
        Column(
            f"{name}_accuracy_unlabeled",
            f"{name.replace('_', ' ')} acc. unl.",
            ("baselines", name, "accuracy_unlabeled"),
        )
        for name in names
    ]


@dataclass
class Job:
    """One job directory of a sweep, as far as it got.

    Attributes:
        name: The directory name relative to the sweep root (the job number by default).
        directory: The job's output directory.
        overrides: ``key -> value`` of the job's command-line overrides, in their order.
        status: ``summary.json``'s status, or ``incomplete`` when it is missing or unreadable.
        error: The failure message, if any.
        summary: The parsed ``summary.json`` (empty when unreadable).
    """

    name: str
    directory: Path
    overrides: dict[str, str]
    status: str
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    def value(self, column: Column) -> Any:
        """The column's value in summary.json; None where the job did not report it."""
        node: Any = self.summary
        for key in column.path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def label(self, keys: Sequence[str]) -> str:
        """``prior=mixture, num_labeled=100`` from the given override keys, or the job name."""
        parts = [f"{key}={self.overrides[key]}" for key in keys if key in self.overrides]
        return ", ".join(parts) or f"job {self.name}"


def parse_overrides(lines: Sequence[str]) -> dict[str, str]:
    """``["prior=mixture", "+x=1"]`` -> ``{"prior": "mixture", "x": "1"}``."""
    overrides: dict[str, str] = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        overrides[key.lstrip("+")] = value
    return overrides


def _read_overrides(path: Path) -> dict[str, str]:
    try:
        lines = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as error:
        log.warning("cannot read %s: %s", path, error)
        return {}
    return parse_overrides(lines) if isinstance(lines, list) else {}


def read_job(directory: Path, output_subdir: str | None = ".hydra") -> Job:
    """Read one job directory; never raises for a missing or half-written summary."""
    overrides = (
        _read_overrides(directory / output_subdir / "overrides.yaml") if output_subdir else {}
    )
    path = directory / "summary.json"
    if not path.exists():
        return Job(directory.name, directory, overrides, INCOMPLETE, "no summary.json")
    try:
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        return Job(
            directory.name, directory, overrides, INCOMPLETE, f"unreadable summary.json: {error}"
        )
    status = str(summary.get("status") or INCOMPLETE)
    error = summary.get("error")
    return Job(
        directory.name,
        directory,
        overrides,
        status,
        None if error is None else str(error),
        summary,
    )


def _job_order(directory: Path) -> tuple[int, int, str]:
    # Job numbers sort numerically (2 before 10); other sub-directory names after them.
    name = directory.name
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def collect_jobs(sweep_dir: Path, output_subdir: str | None = ".hydra") -> list[Job]:
    """Every job directory of a sweep: a sub-directory with a summary or Hydra's job files."""
    candidates = [
        path
        for path in Path(sweep_dir).iterdir()
        if path.is_dir()
        and not path.name.startswith(".")
        and (
            (path / "summary.json").exists()
            or (output_subdir is not None and (path / output_subdir).is_dir())
        )
    ]
    return [read_job(path, output_subdir) for path in sorted(candidates, key=_job_order)]


def varying_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose value is not the same in every job, in first-seen order."""
    keys: list[str] = []
    for job in jobs:
        keys += [key for key in job.overrides if key not in keys]
    return [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]


def common_overrides(jobs: Sequence[Job]) -> dict[str, str]:
    """Overrides that every job shares (e.g. ``trainer.max_epochs=3`` on the whole sweep)."""
    if not jobs:
        return {}
    varying = set(varying_keys(jobs))
    return {key: value for key, value in jobs[0].overrides.items() if key not in varying}


@dataclass
class SeedGroup:
    """Jobs that differ only in ``seed``; statistics use the completed ones."""

    overrides: dict[str, str]
    jobs: list[Job]

    @property
    def completed(self) -> list[Job]:
        return [job for job in self.jobs if job.completed]

    def statistics(self, column: Column) -> tuple[float | None, float | None, int]:
        """(mean, sample standard deviation, n) over the completed seeds that report ``column``.

        The standard deviation uses n - 1 and is None for a single seed.
        """
        values = [job.value(column) for job in self.completed]
        numbers = [
            float(v)
            for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if not numbers:
            return None, None, 0
        spread = statistics.stdev(numbers) if len(numbers) > 1 else None
        return statistics.fmean(numbers), spread, len(numbers)

    def label(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.overrides.items()) or "all jobs"


def seed_groups(jobs: Sequence[Job]) -> list[SeedGroup]:
    """Jobs grouped by every varying override but ``seed``; empty when no two share the rest."""
    keys = varying_keys(jobs)
    if SEED_KEY not in keys:
        return []
    other = [key for key in keys if key != SEED_KEY]
    groups: dict[tuple, SeedGroup] = {}
    for job in jobs:
        identity = tuple(job.overrides.get(key) for key in other)
        group = groups.setdefault(
            identity, SeedGroup({key: job.overrides.get(key, "") for key in other}, [])
        )
        group.jobs.append(job)
    if all(len(group.jobs) == 1 for group in groups.values()):
        return []
    return list(groups.values())


@dataclass
class Sweep:
    """Everything the sweep report shows, read back from a sweep directory."""

    directory: Path
    jobs: list[Job]
    keys: list[str]
    columns: list[Column]
    groups: list[SeedGroup]
    common: dict[str, str]
    command_overrides: list[str] = field(default_factory=list)
    wall_time_sec: float | None = None

    @property
    def unfinished(self) -> list[Job]:
        """Jobs that did not complete (failed, interrupted, incomplete)."""
        return [job for job in self.jobs if not job.completed]


def _command_overrides(sweep_dir: Path) -> list[str]:
    """The sweep's command-line arguments after ``-m``, from Hydra's record in multirun.yaml."""
    try:
        overrides = (yaml.safe_load((sweep_dir / "multirun.yaml").read_text()) or {})["hydra"][
            "overrides"
        ]
        arguments = [*overrides.get("hydra", []), *overrides.get("task", [])]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return []
    # Hydra adds hydra.mode=MULTIRUN itself for -m.
    return [str(argument) for argument in arguments if str(argument) != "hydra.mode=MULTIRUN"]


def _previous_wall_time(sweep_dir: Path) -> float | None:
    # Only the launching process measures the sweep; a rewritten report keeps its figure.
    try:
        value = json.loads((sweep_dir / "sweep_summary.json").read_text()).get("wall_time_sec")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def read_sweep(
    sweep_dir: str | Path, output_subdir: str | None = ".hydra", wall_time_sec: float | None = None
) -> Sweep:
    """Collect a sweep's jobs and derive the columns, overrides and seed groups of its report."""
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir, output_subdir)
    return Sweep(
        directory=sweep_dir,
        jobs=jobs,
        keys=varying_keys(jobs),
        columns=[*HEADLINE_COLUMNS, *baseline_columns(jobs)],
        groups=seed_groups(jobs),
        common=common_overrides(jobs),
        command_overrides=_command_overrides(sweep_dir),
        wall_time_sec=_previous_wall_time(sweep_dir) if wall_time_sec is None else wall_time_sec,
    )


def job_record(job: Job, sweep: Sweep) -> dict[str, Any]:
    """One job as a flat record: name, overrides that vary, status, error, metrics, report."""
    record: dict[str, Any] = {"job": job.name}
    record.update({key: job.overrides.get(key) for key in sweep.keys})
    record.update({"status": job.status, "error": job.error})
    record.update({column.key: job.value(column) for column in sweep.columns})
    report = job.directory / "REPORT.md"
    record["report"] = str(report.relative_to(sweep.directory)) if report.exists() else None
    return record


def group_record(group: SeedGroup, sweep: Sweep) -> dict[str, Any]:
    record: dict[str, Any] = dict(group.overrides)
    record.update({"seeds": len(group.completed), "jobs": [job.name for job in group.jobs]})
    for column in sweep.columns:
        mean, spread, count = group.statistics(column)
        record[column.key] = {"mean": mean, "std": spread, "n": count}
    return record


def _csv_text(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    fieldnames = list(records[0]) if records else ["job", "status", "error"]
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    # None -> empty cell; floats are written with repr, so they read back exactly.
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in records)
    return buffer.getvalue()


def write_sweep_report(
    sweep_dir: str | Path, output_subdir: str | None = ".hydra", wall_time_sec: float | None = None
) -> Sweep:
    """Read a sweep directory and write its report files; returns what was read."""
    return write_sweep(read_sweep(sweep_dir, output_subdir, wall_time_sec))


def write_sweep(sweep: Sweep) -> Sweep:
    """Write SWEEP_REPORT.md, sweep_summary.csv/.json and the figure (each atomically)."""
    # Imported here: matplotlib is only needed once a report is drawn, not to read jobs.
    from ssvae.report.comparison import comparison_figure, render_sweep_report, save_png

    records = [job_record(job, sweep) for job in sweep.jobs]
    write_text(sweep.directory / "sweep_summary.csv", _csv_text(records))
    write_json(
        sweep.directory / "sweep_summary.json",
        {
            "sweep_dir": str(sweep.directory),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command_overrides": sweep.command_overrides,
            "common_overrides": sweep.common,
            "varying_keys": sweep.keys,
            "wall_time_sec": sweep.wall_time_sec,
            "jobs": records,
            "seed_groups": [group_record(group, sweep) for group in sweep.groups],
        },
    )
    figure_name = "sweep_comparison.png"
    figure = comparison_figure(sweep)
    if figure is not None:
        save_png(figure, sweep.directory / figure_name)
    report = render_sweep_report(sweep, figure_name if figure is not None else None)
    write_text(sweep.directory / "SWEEP_REPORT.md", report)
    return sweep


def describe(sweep: Sweep) -> str:
    """``4 jobs: 3 completed, 1 failed`` for logs and the report header."""
    counts: dict[str, int] = {}
    for job in sweep.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    noun = "job" if len(sweep.jobs) == 1 else "jobs"
    return f"{len(sweep.jobs)} {noun}" + (f": {parts}" if parts else "")


def is_multirun() -> bool:
    """Whether the current process runs a job of a Hydra multirun (``train.py -m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _job_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _recorded_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def record_job_failure(run_dir: Path, error: BaseException) -> None:
    """Make sure a failed job's ``summary.json`` exists and names the error.

    ``ssvae.pipeline.train`` writes the full failure summary itself; this covers errors
    raised before it could (e.g. a config interpolation that does not resolve).
    """
    if _recorded_status(run_dir) is not None:
        return
    summary = {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "experiment": {"run_dir": str(run_dir)},
        "training": {},
        "classification": {},
        "mixture": {},
        "clustering": {},
    }
    try:
        write_json(run_dir / "summary.json", summary)
    except OSError as write_error:
        # E.g. an unwritable job directory: the sweep report lists the job as incomplete.
        log.error("could not record the failure in %s: %s", run_dir, write_error)


def _report_interrupted_sweep() -> None:
    # Hydra will not reach on_multirun_end; best effort, the signal's exit must go on.
    hydra_config = HydraConfig.get()
    try:
        sweep = write_sweep_report(hydra_config.sweep.dir, hydra_config.output_subdir)
    except Exception:
        log.exception("could not write the report of the interrupted sweep")
        return
    log.warning("sweep interrupted, %s; report in %s", describe(sweep), sweep.directory)


@contextmanager
def continue_sweep_on_failure() -> Iterator[None]:
    """In a multirun job, turn a failure into a recorded one so that the sweep goes on.

    A failing job (an exception, or ``sys.exit`` with a non-zero status from the entry
    point's error handling) would otherwise stop Hydra's sweep: Hydra re-raises the first
    failed job, and ``SystemExit`` ends the process. Here the failure is logged and kept
    in the job's ``summary.json``; :class:`SweepReportCallback` lists it and sets the exit
    status. An interrupted job (``status: interrupted``, e.g. SIGTERM) still stops the
    sweep, since whoever sent the signal wants the whole sweep to stop, after writing the
    sweep report of the jobs so far. Outside a multirun this does nothing.
    """
    if not is_multirun():
        yield
        return
    run_dir = _job_dir()
    try:
        yield
    except SystemExit as stop:
        if not stop.code:
            return
        if _recorded_status(run_dir) == "interrupted":
            _report_interrupted_sweep()
            raise
        # sys.exit() inside an except block: the error it reports is the one being handled.
        record_job_failure(run_dir, stop.__context__ or stop)
        log.error("job %s failed; the sweep goes on with the next job", run_dir)
    except Exception as error:
        log.exception("job %s failed; the sweep goes on with the next job", run_dir)
        record_job_failure(run_dir, error)


class SweepReportCallback(Callback):
    """Hydra callback: write the sweep report when a multirun ends.

    Jobs of a sweep do not raise (``train.py`` records their failure in ``summary.json``),
    so Hydra always reaches the end of the sweep. If any job did not complete, the process
    then exits with status 1, after the report is written.

    Args:
        exit_on_failure: Exit with status 1 when a job failed, was interrupted or left no
            readable summary. This ends the process from within the callback, so callbacks
            listed before this one in ``hydra.callbacks`` do not get ``on_multirun_end``.
    """

    def __init__(self, exit_on_failure: bool = True) -> None:
        self.exit_on_failure = exit_on_failure
        self._started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        elapsed = None if self._started is None else time.perf_counter() - self._started
        try:
            sweep = write_sweep_report(sweep_dir, config.hydra.output_subdir, elapsed)
        except Exception:
            # Hydra would only warn about an exception here; a sweep without its report fails.
            log.exception("could not write the sweep report in %s", sweep_dir)
            raise SystemExit(1) from None
        log.info("sweep finished, %s", describe(sweep))
        # The sweep's final line on stdout, as train.py prints one per run.
        print(f"Sweep report written to {sweep_dir / 'SWEEP_REPORT.md'}")
        if sweep.unfinished and self.exit_on_failure:
            names = ", ".join(f"{job.name} ({job.status})" for job in sweep.unfinished)
            log.error(
                "%d of %d jobs did not complete: %s", len(sweep.unfinished), len(sweep.jobs), names
            )
            raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ssvae.sweep <sweep dir>``: (re)write a sweep's report from its job folders."""
    parser = argparse.ArgumentParser(prog="python -m ssvae.sweep", description=main.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a directory under outputs/multirun/")
    parser.add_argument(
        "--output-subdir", default=".hydra", help="Hydra's per-job folder (hydra.output_subdir)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if not args.sweep_dir.is_dir():
        log.error("sweep_dir %s: not a directory", args.sweep_dir)
        return 2
    sweep = read_sweep(args.sweep_dir, args.output_subdir)
    if not sweep.jobs:
        log.error("sweep_dir %s: no job directories found", args.sweep_dir)
        return 2
    write_sweep(sweep)
    log.info("%s", describe(sweep))
    print(f"Sweep report written to {args.sweep_dir / 'SWEEP_REPORT.md'}")
    return 1 if sweep.unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
