"""Sweeps through the real ``train.py -m``: job folders, failures, the sweep report, launchers."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, Completed
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ssvae.report.markdown import format_value
from ssvae.sweep import HEADLINE_COLUMNS, Column, collect_jobs, main, write_sweep_report

#: Columns of the job table after the job link, in order: overrides, status, metrics.
STATUS = "Status"


@pytest.fixture
def sweep_tiny(data_cache: Path, tmp_path: Path):
    """``train.py -m`` on the tiny configuration plus ``overrides``, in a fresh sweep folder."""

    def run(*overrides: str, name: str = "sweep", timeout: float = 900) -> Completed:
        sweep_dir = tmp_path / name
        command = [
            sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep_dir}",
            *TINY, *overrides,
        ]  # fmt: skip
        environment = {**os.environ, "SSVAE_CACHE_DIR": str(data_cache)}
        process = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment
        )
        return Completed(process.returncode, process.stdout, process.stderr, sweep_dir)

    return run


def table(report: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the Markdown table whose first header cell is ``first_header``."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))))
    return rows


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {
        path.parent.name: json.loads(path.read_text())
        for path in sorted(sweep_dir.glob("*/summary.json"))
    }


def value(summary: dict, column: Column):
    node = summary
    for key in column.path:
        node = (node or {}).get(key)
    return node


def baseline_column(name: str) -> Column:
    return Column("", "", ("baselines", name, "accuracy_unlabeled"))


def test_two_by_two_sweep_reports_every_job(sweep_tiny):
    result = sweep_tiny("prior=mixture,standard", "num_labeled=10,20")
    assert result.returncode == 0, result.output
    sweep_dir = result.run_dir
    assert f"Sweep report written to {sweep_dir / 'SWEEP_REPORT.md'}" in result.stdout

    jobs = summaries(sweep_dir)
    assert sorted(jobs) == ["0", "1", "2", "3"]
    assert {job["status"] for job in jobs.values()} == {"completed"}
    for name in jobs:
        assert (sweep_dir / name / "REPORT.md").is_file()
    assert (sweep_dir / "sweep_comparison.png").stat().st_size > 1000

    report = (sweep_dir / "SWEEP_REPORT.md").read_text()
    assert f"`python train.py -m hydra.sweep.dir={sweep_dir} " in report
    assert "prior=mixture,standard num_labeled=10,20`" in report
    rows = table(report, "Job")
    assert [row["Job"] for row in rows] == [f"[{n}](<{n}/REPORT.md>)" for n in "0123"]
    baselines = list(next(iter(jobs.values())).get("baselines") or {})
    columns = [*HEADLINE_COLUMNS] + [baseline_column(name) for name in baselines]
    for row, (name, summary) in zip(rows, jobs.items()):
        assert row[STATUS] == "completed"
        assert row["prior"] == summary["experiment"]["prior"]
        assert row["num\\_labeled"] == str(summary["experiment"]["num_labeled"])
        cells = list(row.values())[-len(columns) :]
        assert cells == [format_value(value(summary, column)) for column in columns], name
    assert "## Jobs that did not complete" not in report
    assert "## Seed groups" not in report

    with open(sweep_dir / "sweep_summary.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [record["job"] for record in records] == ["0", "1", "2", "3"]
    for record, summary in zip(records, jobs.values()):
        for column in HEADLINE_COLUMNS:
            expected = value(summary, column)
            assert record[column.key] == ("" if expected is None else str(expected)), column.key
        for name in baselines:
            expected = summary["baselines"][name]["accuracy_unlabeled"]
            assert float(record[f"{name}_accuracy_unlabeled"]) == expected


def test_failing_jobs_do_not_stop_the_sweep(sweep_tiny):
    # Jobs in order: (301, 1e39) and (301, 1.0) are impossible, (20, 1e39) overflows the
    # loss to inf during training, (20, 1.0) is fine and must still run after them.
    result = sweep_tiny(
        "num_labeled=301,20", "loss.recon_weight=1e39,1.0", "baselines.enabled=false"
    )
    assert result.returncode != 0, result.output
    sweep_dir = result.run_dir
    jobs = summaries(sweep_dir)
    assert [jobs[name]["status"] for name in "0123"] == ["failed", "failed", "failed", "completed"]
    assert "num_labeled=301" in jobs["0"]["error"]
    assert "non-finite" in jobs["2"]["error"].lower() or "inf" in jobs["2"]["error"].lower()

    report = (sweep_dir / "SWEEP_REPORT.md").read_text()
    assert [row[STATUS] for row in table(report, "Job")] == ["failed"] * 3 + ["completed"]
    failures = table(report.split("## Jobs that did not complete")[1], "Job")
    assert [row["Job"][1] for row in failures] == ["0", "1", "2"]
    assert "num\\_labeled=301: must be in" in failures[0]["Error"]
    assert "4 jobs: 1 completed, 3 failed" in report


def test_a_sweep_where_every_job_fails_still_writes_its_report(sweep_tiny):
    result = sweep_tiny("num_labeled=301,400")
    assert result.returncode != 0, result.output
    report = (result.run_dir / "SWEEP_REPORT.md").read_text()
    assert [row[STATUS] for row in table(report, "Job")] == ["failed", "failed"]
    assert "2 jobs: 2 failed" in report
    assert not (result.run_dir / "sweep_comparison.png").exists()
    records = json.loads((result.run_dir / "sweep_summary.json").read_text())["jobs"]
    assert [record["num_labeled"] for record in records] == ["301", "400"]


@pytest.mark.slow
def test_seed_groups_give_mean_and_std_of_the_jobs(sweep_tiny):
    result = sweep_tiny(
        "seed=1,2,3", "num_labeled=10,20", "trainer.max_epochs=1", "baselines.enabled=false"
    )
    assert result.returncode == 0, result.output
    jobs = summaries(result.run_dir)
    assert len(jobs) == 6

    groups = json.loads((result.run_dir / "sweep_summary.json").read_text())["seed_groups"]
    assert [(group["num_labeled"], group["seeds"]) for group in groups] == [("10", 3), ("20", 3)]
    rows = table((result.run_dir / "SWEEP_REPORT.md").read_text(), "num\\_labeled")
    assert [(row["num\\_labeled"], row["Seeds"]) for row in rows] == [("10", "3"), ("20", "3")]
    for group, row in zip(groups, rows):
        members = [jobs[name] for name in group["jobs"]]
        assert {job["experiment"]["num_labeled"] for job in members} == {int(group["num_labeled"])}
        assert sorted(job["experiment"]["seed"] for job in members) == [1, 2, 3]
        for column in HEADLINE_COLUMNS:
            values = [value(job, column) for job in members]
            if None in values:
                continue
            mean, spread = statistics.fmean(values), statistics.stdev(values)
            assert group[column.key]["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-12)
            assert group[column.key]["std"] == pytest.approx(spread, rel=1e-9, abs=1e-12)
            assert group[column.key]["n"] == 3
            assert row[column.label] == f"{format_value(mean)} ± {format_value(spread)}"


@pytest.mark.slow
def test_joblib_launcher_runs_a_two_job_sweep(sweep_tiny):
    result = sweep_tiny(
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "threads=1",
        "num_labeled=10,20", "baselines.enabled=false",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "Joblib.Parallel(n_jobs=2" in result.output
    jobs = summaries(result.run_dir)
    assert [jobs[name]["status"] for name in ("0", "1")] == ["completed", "completed"]
    assert [job["experiment"]["config"]["threads"] for job in jobs.values()] == [1, 1]
    rows = table((result.run_dir / "SWEEP_REPORT.md").read_text(), "Job")
    assert [row["num\\_labeled"] for row in rows] == ["10", "20"]


def test_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.nodes == 1 and launcher.timeout_min > 0
    assert cfg.hydra.callbacks.sweep_report._target_ == "ssvae.sweep.SweepReportCallback"
    # The plugin's own class accepts every key of our config.
    assert type(instantiate(launcher)).__name__ == "SlurmLauncher"


# --- The report on hand-made sweep folders: no training, every state a job can be left in.


def make_job(sweep_dir: Path, name: str, overrides: list[str], summary: str | dict | None):
    job_dir = sweep_dir / name
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        text = summary if isinstance(summary, str) else json.dumps(summary)
        (job_dir / "summary.json").write_text(text)


def completed(accuracy: float, baselines: dict | None = None) -> dict:
    summary = {
        "status": "completed",
        "training": {"epochs_completed": 3, "training_time_sec": 1.5, "loss": 100.0},
        "classification": {"accuracy": accuracy, "accuracy_unlabeled": accuracy - 0.01},
        "mixture": {"K_eff": 4.0, "active_components": 5},
        "clustering": {"nmi": 0.5, "ari": 0.4, "cluster_accuracy": 0.6},
    }
    if baselines is not None:
        summary["baselines"] = baselines
    return summary


def test_unfinished_jobs_are_listed_and_never_break_the_report(tmp_path, capsys):
    make_job(tmp_path, "0", ["lr=1", "seed=1"], completed(0.8))
    make_job(tmp_path, "1", ["lr=1", "seed=2"], None)  # killed before writing anything
    make_job(tmp_path, "2", ["lr=2", "seed=1"], '{"status": "compl')  # killed mid-write
    make_job(tmp_path, "10", ["lr=2", "seed=2"], {"status": "interrupted", "error": "SIGTERM"})
    make_job(tmp_path, "3", ["lr=3", "seed=1"], {"status": "failed", "error": "Boom: x", "new": 1})
    (tmp_path / "not-a-job").mkdir()

    write_sweep_report(tmp_path, wall_time_sec=12.5)  # as the launching process would
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "SWEEP_REPORT.md"))
    report = (tmp_path / "SWEEP_REPORT.md").read_text()
    assert "- **Sweep wall time:** 12.5 s" in report  # kept when the report is rewritten
    rows = table(report, "Job")
    assert [row["Job"] for row in rows] == ["0", "1", "2", "3", "10"]  # no REPORT.md: no link
    assert [row[STATUS] for row in rows] == [
        "completed", "incomplete", "incomplete", "failed", "interrupted"
    ]  # fmt: skip
    errors = {
        row["Job"]: row["Error"] for row in table(report.split("did not complete")[1], "Job")
    }
    assert errors["1"] == "no summary.json"
    assert errors["2"].startswith("unreadable summary.json")
    assert errors["3"] == "Boom: x" and errors["10"] == "SIGTERM"
    # Seeds 1 and 2 of lr=1 form a group, with one completed seed.
    groups = table(report.split("## Seed groups")[1], "lr")
    assert groups[0]["lr"] == "1" and groups[0]["Seeds"] == "1 (of 2)"
    assert groups[0]["Accuracy"] == "0.8000"


def test_baseline_columns_only_when_a_job_reports_baselines(tmp_path):
    make_job(tmp_path / "a", "0", ["lr=1"], completed(0.8))
    make_job(tmp_path / "a", "1", ["lr=2"], completed(0.7))
    assert [c.key for c in write_sweep_report(tmp_path / "a").columns] == [
        c.key for c in HEADLINE_COLUMNS
    ]
    report = (tmp_path / "a" / "SWEEP_REPORT.md").read_text()
    assert "acc. unl." not in report and "Final loss" in report

    baselines = {"logistic_regression": {"accuracy": 0.6, "accuracy_unlabeled": 0.55}}
    make_job(tmp_path / "b", "0", ["lr=1"], completed(0.8, baselines))
    make_job(tmp_path / "b", "1", ["lr=2"], completed(0.7))
    write_sweep_report(tmp_path / "b")
    rows = table((tmp_path / "b" / "SWEEP_REPORT.md").read_text(), "Job")
    assert [row["logistic regression acc. unl."] for row in rows] == ["0.5500", "n/a"]
    assert [job.name for job in collect_jobs(tmp_path / "b")] == ["0", "1"]


def test_cli_rejects_a_folder_without_jobs(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "ssvae.sweep", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2
    assert "missing: not a directory" in process.stderr
    assert main([str(tmp_path)]) == 2
    assert not (tmp_path / "SWEEP_REPORT.md").exists()
