"""Per-run report: figures, REPORT.md and summary.json."""
