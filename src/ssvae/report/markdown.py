"""Rendering of ``REPORT.md`` from a run summary."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence

#: Row order of each summary section in the report table.
SECTIONS: dict[str, tuple[str, ...]] = {
    "Training": (
        "loss", "recon_loss", "kl_z", "kl_c", "training_time_sec", "epochs_completed",
        "best_epoch", "best_val_loss", "stopped_early",
    ),
    "Classification": (
        "accuracy", "accuracy_unlabeled", "accuracy_labeled", "accuracy_val", "accuracy_test",
        "classification_loss", "accuracy_source", "accuracy_components",
        "accuracy_components_unlabeled",
    ),
    "Mixture": (
        "K", "component_entropy", "pi_entropy", "K_eff", "active_components",
        "responsibility_confidence_mean", "component_majority_labels",
        "component_majority_confidence", "pi_max", "pi_min", "pi_argmax", "component_usage",
        "pi_values",
    ),
    "Clustering": ("nmi", "ari", "cluster_accuracy", "clustering_source"),
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


def _config_block(title: str, config: Mapping | None) -> list[str]:
    if not config:
        return []
    text = json.dumps(config, indent=2, default=str).replace("```", "'''")
    return [f"### {title}", "", "```json", text, "```", ""]


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
    lines += ["", "## Summary", "", *summary_table(summary), ""]
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
