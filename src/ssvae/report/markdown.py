"""Rendering of ``REPORT.md`` from a run summary."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence

#: Row order of each summary section in the report table.
SECTIONS: dict[str, tuple[str, ...]] = {
    "Training": (
        "loss", "recon_loss", "kl_z", "kl_c", "kl_z_weighted", "kl_c_weighted",
        "training_time_sec", "epochs_completed", "best_epoch", "best_val_loss", "stopped_early",
    ),
    "Classification": (
        "accuracy", "accuracy_unlabeled", "accuracy_labeled", "accuracy_val", "accuracy_test",
        "classification_loss", "accuracy_source", "accuracy_components",
        "accuracy_components_unlabeled", "accuracy_components_test", "accuracy_head",
        "accuracy_head_unlabeled", "accuracy_head_test",
    ),
    "Mixture": (
        "K", "component_entropy", "pi_entropy", "K_eff", "active_components",
        "responsibility_confidence_mean", "component_majority_labels",
        "component_majority_classes", "component_majority_confidence", "pi_max", "pi_min",
        "pi_argmax", "component_usage", "pi_values",
    ),
    "Clustering": (
        "nmi", "ari", "cluster_accuracy", "clustering_source", "nmi_test", "ari_test",
        "cluster_accuracy_test",
    ),
}  # fmt: skip

_ACRONYMS = {"kl": "KL", "nmi": "NMI", "ari": "ARI"}

FIGURES = {
    "loss_curves.png": "Loss curves",
    "latent_by_class.png": "Latent space by class",
    "latent_by_component.png": "Latent space by component",
    "responsibility_confidence.png": "Responsibility confidence",
    "reconstructions.png": "Reconstructions",
    "mixture_evolution.png": "Mixture evolution",
}


def row_label(key: str) -> str:
    """``recon_loss`` -> ``Recon Loss``, ``kl_z`` -> ``KL Z``, ``K_eff`` -> ``K Eff``."""
    return " ".join(
        _ACRONYMS.get(word.lower(), word[:1].upper() + word[1:]) for word in key.split("_")
    )


def escape(text: object) -> str:
    """Make a config string inert in Markdown: no HTML, no table breaks, no control characters."""
    cleaned = re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
    cleaned = html.escape(cleaned, quote=False)
    return re.sub(r"([\\`*_\[\]|#<>!])", r"\\\1", cleaned)


def format_value(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return escape(value)


def summary_table(summary: Mapping) -> list[str]:
    lines = ["| Group | Metric | Value |", "|---|---|---|"]
    for section, keys in SECTIONS.items():
        values = summary.get(section.lower()) or {}
        for key in keys:
            if key in values:
                lines.append(f"| {section} | {row_label(key)} | {format_value(values[key])} |")
    return lines


#: Columns of the Baselines table, in order; ``accuracy_test`` only where a test split exists.
BASELINE_COLUMNS = (
    "accuracy", "accuracy_unlabeled", "accuracy_labeled", "accuracy_val", "accuracy_test",
)  # fmt: skip

BASELINE_LABELS = {
    "logistic_regression": "LogisticRegression (pixels, labelled samples only)",
    "label_spreading": "LabelSpreading (kNN graph on pixels)",
}


def baselines_table(summary: Mapping) -> list[str]:
    """This run's classifier beside the scikit-learn baselines, on the same samples."""
    baselines = summary.get("baselines") or {}
    if not baselines:
        return []
    model = summary.get("classification") or {}
    rows = {f"This model ({escape(model.get('accuracy_source', 'n/a'))})": model}
    rows.update(
        {BASELINE_LABELS.get(name, escape(name)): values for name, values in baselines.items()}
    )
    columns = [key for key in BASELINE_COLUMNS if any(key in row for row in rows.values())]
    lines = [
        "## Baselines",
        "",
        "Fitted on the run's labelled samples only; scored on the same samples as the model.",
        "",
        "| Classifier | " + " | ".join(row_label(key) for key in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for label, values in rows.items():
        cells = " | ".join(format_value(values.get(key)) for key in columns)
        lines.append(f"| {label} | {cells} |")
    return [*lines, ""]


def _config_block(title: str, config: Mapping | None) -> list[str]:
    if not config:
        return []
    text = json.dumps(config, indent=2, default=str).replace("```", "'''")
    return [f"### {title}", "", "```json", text, "```", ""]


def code(text: object) -> str:
    """Inline code span of ``text``, with backticks and control characters removed."""
    return "`" + re.sub(r"[\x00-\x1f\x7f`]", "", str(text)) + "`"


def stop_lines(summary: Mapping) -> list[str]:
    """Where an interrupted run resumes from, or the last good checkpoint of a failed one."""
    interruption = summary.get("interruption") or {}
    failure = summary.get("failure") or {}
    lines = []
    if interruption:
        lines.append(f"- **Interrupted by:** {escape(interruption.get('signal'))}")
        resume = interruption.get("resume_from")
        lines.append(
            f"- **Resume with:** {code(f'ckpt_path={resume}')}"
            if resume
            else "- **Resume with:** no completed epoch; start the run again"
        )
    if failure:
        last_good = failure.get("last_good_checkpoint")
        lines.append(
            f"- **Last good checkpoint:** {code(last_good)}"
            if last_good
            else "- **Last good checkpoint:** none (no epoch completed)"
        )
    return lines


def render_report(summary: Mapping, figures: Iterable[str]) -> str:
    """The whole REPORT.md for a run summary and the figure files that exist."""
    experiment = summary.get("experiment", {})
    tags = ", ".join(escape(tag) for tag in experiment.get("tags") or []) or "none"
    lines = [
        f"# {escape(experiment.get('name', 'run'))}",
        "",
        f"{escape(experiment.get('description') or '')}",
        "",
        f"- **Status:** {escape(summary.get('status'))}",
        f"- **Tags:** {tags}",
        f"- **Timestamp:** {escape(experiment.get('timestamp', ''))}",
        f"- **Seed:** {escape(experiment.get('seed', ''))}",
    ]
    if summary.get("error"):
        lines.append(f"- **Error:** {escape(summary['error'])}")
    lines += stop_lines(summary)
    lines += ["", "## Summary", "", *summary_table(summary), ""]
    lines += baselines_table(summary)
    lines += ["## Configuration", ""]
    config = experiment.get("config") or {}
    lines += _config_block("Data", config.get("data"))
    lines += _config_block(
        "Model", {key: config.get(key) for key in ("model", "prior", "loss", "optimizer")}
    )
    existing = list(figures)
    if existing:
        lines += ["## Figures", ""]
        for name, caption in FIGURES.items():
            if name in existing:
                lines += [f"### {caption}", "", f"![{caption}](figures/{name})", ""]
    return "\n".join(lines)
